"""The JSON the service speaks: pydantic models, so the OpenAPI schema at ``/docs`` documents every field."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from fakescope.forensics.provenance import Provenance


class Explanation(BaseModel):
    """Why the model decided: images as base64-encoded PNG (no ``data:`` prefix)."""

    ela_png: str | None = Field(None, description="Error level analysis map of the upload (base64 PNG).")
    gradcam_png: str | None = Field(None, description="Class-activation heatmap over the upload, by `method` (base64 PNG).")
    method: str = Field(description="Class-activation method used for the heatmap (gradcam++ unless asked otherwise).")
    error: str | None = Field(None, description="Why a view could not be computed, if one is missing.")


class DetectResult(BaseModel):
    """One scored image: the same fields as a ``fakescope scan`` result, plus the decoded size and explanation."""

    path: str = Field(description="The uploaded file name.")
    fake_probability: float | None = Field(description="Calibrated probability that the image is fake, 0..1.")
    label: Literal["real", "fake", "uncertain"] | None = Field(
        description="'fake' if fake_probability >= threshold (or, with trust_credentials, a valid C2PA manifest "
                    "declares AI generation); 'uncertain' when the image is unlike the detector's training images "
                    "(familiarity below 0.05) and the score is between 0.1 and 0.9.")
    threshold: float | None = Field(None, description="The probability at or above which this image's label is fake: "
                                    "the model's own threshold, or the request's `threshold`. Null, as "
                                    "fake_probability and label are, when the image could not be scored.")
    familiarity: float | None = Field(None, description="How much the image looks like the detector's training "
                                      "images, 0..1: the share of its validation images that lie at least as far "
                                      "from the training features (5% of them score below 0.05). Null when the "
                                      "detector carries no description of its training features.")
    copy_move: int | None = Field(None, description="Keypoint pairs that one transform maps onto each other: a copy "
                                  "pasted inside the image (SIFT self-matching), already counted in fake_probability. "
                                  "Null when the detector does not check for copy-moves (the shipped default does).")
    model: str = Field(description="The detector that scored the image.")
    error: str | None = Field(None, description="Why this image could not be scored (batch items only).")
    width: int | None = Field(None, description="Decoded image width in pixels.")
    height: int | None = Field(None, description="Decoded image height in pixels.")
    explanation: Explanation | None = Field(None, description="Present when the request asked for explain=true.")
    provenance: Provenance | None = Field(None, description="What the file declares about its origin (C2PA Content "
                                          "Credentials, XMP, generator settings, camera EXIF), read from the uploaded "
                                          "bytes; evidence about the file, kept apart from the pixel score. Absent "
                                          "when the request set provenance=false, and for videos.")
    label_reason: str | None = Field(None, description="Set when something other than the score chose the label "
                                     "(trust_credentials), saying what.")

    @model_serializer(mode="wrap")
    def _without_unread_provenance(self, handler: SerializerFunctionWrapHandler):
        # As in `fakescope scan --no-provenance`'s rows: provenance not read is no field, not a null. (No return
        # annotation, so the OpenAPI schema stays the model's own.)
        out = handler(self)
        if self.provenance is None:
            out.pop("provenance", None)
        return out


class FaceRecord(BaseModel):
    box: list[int] = Field(description="Face box in frame pixels: left, top, width, height.")
    score: float = Field(description="Fake probability of this face's crop.")


class FrameRecord(BaseModel):
    """One sampled frame of a video, as ``fakescope scan`` writes it."""

    index: int = Field(description="Position of the frame in the stream (0-based).")
    time: float = Field(description="Time of the frame in seconds from the start.")
    score: float = Field(description="The frame's fake probability: its most suspicious face, or the whole frame.")
    face: bool = Field(description="Whether a face was found (else the whole frame was scored).")
    faces: list[FaceRecord]


class VideoResult(DetectResult):
    """One scored video: the video's fake probability (mean of its highest frame scores) and every sampled frame."""

    frames: list[FrameRecord] = Field(description="The sampled frames with their scores and faces.")


#: Fields of the service's results that a ``fakescope scan`` row does not have: accepted by ``POST /v1/results``
#: and left out of the file it writes.
WEB_ONLY_FIELDS = frozenset({"width", "height", "explanation"})


class ResultRecord(BaseModel):
    """One record for ``POST /v1/results``: a result as ``/v1/detect/batch`` or ``/v1/detect/video`` gave it, or a
    ``fakescope scan`` JSON row. Each field is checked for its type; an unknown field is refused."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    path: str
    fake_probability: float | None
    label: Literal["real", "fake", "uncertain"] | None
    threshold: float | None = None
    model: str
    error: str | None = None
    frames: list[dict[str, Any]] | None = None
    provenance: dict[str, Any] | None = None
    label_reason: str | None = None
    familiarity: float | None = None
    copy_move: int | None = None
    path_bytes: str | None = Field(None, pattern="^([0-9a-fA-F]{2})*$",
                                   description="The file name's bytes as hex, when it is not UTF-8 (scan rows).")
    width: int | None = Field(None, description="Web-only: accepted, not written.")
    height: int | None = Field(None, description="Web-only: accepted, not written.")
    explanation: dict[str, Any] | None = Field(None, description="Web-only: accepted, not written.")

    def scan_row(self) -> dict[str, Any]:
        """The record as a ``fakescope scan`` row: the fields sent, without the web-only ones."""
        return self.model_dump(exclude_unset=True, exclude=set(WEB_ONLY_FIELDS))


class BatchResult(BaseModel):
    model: str
    threshold: float
    results: list[DetectResult] = Field(description="One result per uploaded file, in upload order.")


class ThresholdRequest(BaseModel):
    """Fake probabilities this server's model gave images the client knows are real (from ``/v1/detect/batch``)."""

    model_config = ConfigDict(strict=True, allow_inf_nan=False)  # a JSON true, NaN or 1e999 is not a probability

    fake_probabilities: list[Annotated[float, Field(ge=0.0, le=1.0)]] = Field(
        min_length=1, description="One score per known-real image, as returned by this server's model.")
    fpr: float = Field(0.05, ge=0.0, lt=1.0, description="Share of these reals the threshold may flag as fake.")


class ThresholdResult(BaseModel):
    """A threshold chosen on the client's own real photos (the same figures as ``fakescope threshold``)."""

    model: str = Field(description="The detector whose scores these are.")
    n: int = Field(description="Real images the threshold was chosen on.")
    max_fpr: float = Field(description="The share of them it may flag (the request's fpr).")
    threshold: float = Field(description="Lowest threshold that flags at most max_fpr of them, rounded up to 4 "
                             "decimals (more where a score lies closer above it), flagging the same ones; pass it "
                             "as `threshold` to /v1/detect.")
    flagged_at_threshold: float = Field(description="Share of them that threshold flags.")
    model_threshold: float = Field(description="The model's own threshold.")
    flagged_at_model_threshold: float = Field(description="Share of them the model's own threshold flags.")
    held_out_fpr: float | None = Field(description="Cross-fitted share a threshold chosen this way flags on other "
                                       "photos of the same kind (5 folds; None under 5 images).")
    warning: str | None = Field(None, description="Set when there are too few images for a reliable threshold.")


class ModelInfo(BaseModel):
    name: str
    params: int
    input_size: int
    input_mode: str
    shipped: bool = Field(description="Weights ship with fakescope.")
    default: bool = Field(description="The detector used when none is named.")
    description: str


class ModelsResponse(BaseModel):
    loaded: str | None = Field(description="Name of the detector this server answers with (None while loading).")
    ready: bool
    models: list[ModelInfo] = Field(description="Every registered detector.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    ready: bool
    model: str | None = Field(description="The loaded detector, once ready.")
    error: str | None = Field(None, description="Why the model failed to load, if it did.")
    api_key_required: bool = Field(description="Whether /v1 endpoints need the X-API-Key header.")
    max_batch_files: int = Field(description="Most files one /v1/detect/batch request may carry.")
    max_upload_mb: float = Field(description="Largest request body in MB (a batch's files together).")


class ErrorMessage(BaseModel):
    """Every 4xx and 5xx answer has this shape."""

    detail: str = Field(description="One line saying what went wrong.")


class FieldError(BaseModel):
    loc: list[str] = Field(description="Where in the request: body, query, ... then the field.")
    msg: str
    type: str


class UnprocessableMessage(BaseModel):
    detail: str = Field(description="One line: the image's reason, or the request's validation errors.")
    errors: list[FieldError] | None = Field(None, description="For an invalid request: each field's error (the "
                                            "offending value is not echoed).")
