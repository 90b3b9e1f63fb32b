"""One router per concern: detection, the model catalogue, health probes."""
