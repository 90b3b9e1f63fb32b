"""Ensembles of detectors: how members' outputs are combined (:mod:`.combine`) and how a combiner is fitted on
data (:mod:`.fit`). A saved ensemble is a detector kind (:mod:`fakescope.inference.kinds.ensemble`)."""
