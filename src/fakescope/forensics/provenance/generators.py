"""Generator settings that image-generation front-ends write into the file, and known software names.

- AUTOMATIC1111's web UI (and Forge, SD.Next) writes a ``parameters`` text (PNG chunk, or EXIF ``UserComment`` in
  JPEG/WebP): the prompt, ``Negative prompt: ...`` and a last line ``Steps: 20, Sampler: ..., Model: ...``.
- ComfyUI writes its node graph as JSON in ``prompt`` (the executed graph) and ``workflow`` (the editor's).
- NovelAI writes ``Software: NovelAI``, ``Source`` (the model) and a JSON ``Comment`` with the settings.
- InvokeAI writes JSON in ``invokeai_metadata`` (older versions: ``sd-metadata``, ``Dream``).
- Midjourney writes the prompt and a ``Job ID`` in ``Description``; OpenAI, Adobe Firefly, Google and others
  name themselves in ``Software``/``CreatorTool`` or sign Content Credentials (read elsewhere).

Every text is cut to :data:`MAX_TEXT` characters before it is parsed, so a huge chunk costs nothing.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: Characters of one text field read (a prompt plus settings is a few kB; the rest of a huge chunk is ignored).
MAX_TEXT = 64 * 1024
#: Characters of a prompt kept in the record.
MAX_PROMPT = 1000
# A1111's own pattern for its "key: value, key: "quoted, value"" settings line (modules/infotext_utils.py).
_A1111_PAIR = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')

#: Lower-case names of image generators, as they appear in Software / CreatorTool / AISystemUsed fields.
KNOWN_GENERATORS = ("midjourney", "dall-e", "dall·e", "dalle", "stable diffusion", "stablediffusion", "sdxl",
                    "novelai", "invokeai", "comfyui", "automatic1111", "fooocus", "adobe firefly", "firefly",
                    "imagen", "ideogram", "leonardo.ai", "dreamstudio", "nightcafe", "bing image creator",
                    "flux.1", "openai", "gpt-image", "chatgpt", "gemini", "grok", "recraft", "kandinsky")
#: Lower-case names of image editors, as they appear in Software / CreatorTool.
KNOWN_EDITORS = ("photoshop", "lightroom", "gimp", "affinity photo", "pixelmator", "snapseed", "paint.net",
                 "capture one", "darktable", "rawtherapee", "luminar", "canva", "photopea", "picsart", "facetune",
                 "photoscape", "acdsee", "paintshop", "corel", "krita", "photodirector", "fotor", "vsco")


@dataclass
class GeneratorSettings:
    """Generation settings found in the file's text fields."""

    __pydantic_config__ = {"use_attribute_docstrings": True}
    tool: str
    """The front-end that wrote them: AUTOMATIC1111, ComfyUI, NovelAI, InvokeAI or Midjourney."""
    field: str
    """The text field they were read from (``parameters``, ``prompt``, ``Comment``, ``UserComment``, ...)."""
    prompt: str | None = None
    """The prompt, cut to 1000 characters."""
    model: str | None = None
    """The model or checkpoint named."""
    settings: dict[str, str] = field(default_factory=dict)
    """Other settings (steps, sampler, seed, size, ...) as written."""


def _cut(text: str, n: int = MAX_PROMPT) -> str:
    return text if len(text) <= n else text[:n] + "…"


def parse_a1111(text: str, where: str = "parameters") -> GeneratorSettings | None:
    """AUTOMATIC1111-style parameters; None when the text has no ``Steps:`` settings line."""
    lines = text.strip().splitlines()
    if not lines or "Steps: " not in lines[-1]:
        return None
    settings = {k.strip(): v.strip().strip('"') for k, v in _A1111_PAIR.findall(lines[-1])}
    prompt = []
    for line in lines[:-1]:
        if line.startswith("Negative prompt:"):
            settings["Negative prompt"] = _cut(line.removeprefix("Negative prompt:").strip())
            break
        prompt.append(line)
    return GeneratorSettings("AUTOMATIC1111", where, _cut("\n".join(prompt).strip()) or None,
                             settings.pop("Model", None), settings)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        return None


def parse_comfyui(texts: Mapping[str, str]) -> GeneratorSettings | None:
    """ComfyUI's executed graph (``prompt``) or, failing that, its editor graph (``workflow``)."""
    graph = _json(texts.get("prompt", ""))
    if not isinstance(graph, dict):
        return GeneratorSettings("ComfyUI", "workflow") if isinstance(_json(texts.get("workflow", "")), dict) else None
    nodes = [n for n in graph.values() if isinstance(n, dict) and isinstance(n.get("inputs"), dict)]
    out = GeneratorSettings("ComfyUI", "prompt")
    for node in nodes:
        inputs, kind = node["inputs"], str(node.get("class_type", ""))
        for key in ("ckpt_name", "unet_name"):
            if isinstance(inputs.get(key), str) and out.model is None:
                out.model = inputs[key]
        if kind.startswith("CLIPTextEncode") and isinstance(inputs.get("text"), str) and out.prompt is None:
            out.prompt = _cut(inputs["text"])
        if kind.startswith("KSampler"):
            out.settings.update({k: str(inputs[k]) for k in ("seed", "steps", "cfg", "sampler_name", "scheduler")
                                 if isinstance(inputs.get(k), (int, float, str))})
    return out if nodes else None


def parse_novelai(texts: Mapping[str, str]) -> GeneratorSettings | None:
    if texts.get("Software", "").strip() != "NovelAI":
        return None
    comment = _json(texts.get("Comment", ""))
    comment = comment if isinstance(comment, dict) else {}
    settings = {k: str(comment[k]) for k in ("steps", "sampler", "seed", "scale", "width", "height") if k in comment}
    prompt = comment.get("prompt") or texts.get("Description")
    return GeneratorSettings("NovelAI", "Comment", _cut(str(prompt)) if prompt else None, texts.get("Source"), settings)


def parse_invokeai(texts: Mapping[str, str]) -> GeneratorSettings | None:
    for key in ("invokeai_metadata", "sd-metadata"):
        meta = _json(texts.get(key, ""))
        if isinstance(meta, dict):
            image = meta.get("image") if isinstance(meta.get("image"), dict) else meta
            model = meta.get("model")
            model = model.get("name") if isinstance(model, dict) else model
            prompt = image.get("positive_prompt") or image.get("prompt")
            prompt = prompt[0].get("prompt") if isinstance(prompt, list) and prompt and isinstance(prompt[0], dict) else prompt
            settings = {k: str(image[k]) for k in ("steps", "seed", "cfg_scale", "scheduler", "sampler") if k in image}
            return GeneratorSettings("InvokeAI", key, _cut(str(prompt)) if prompt else None,
                                     str(model) if model else None, settings)
    if "Dream" in texts:
        return GeneratorSettings("InvokeAI", "Dream", _cut(texts["Dream"]))
    return None


def parse_midjourney(texts: Mapping[str, str]) -> GeneratorSettings | None:
    description = texts.get("Description", "")
    if "Job ID:" not in description:
        return None
    prompt, _, job = description.partition("Job ID:")
    return GeneratorSettings("Midjourney", "Description", _cut(prompt.strip()) or None, None, {"Job ID": job.strip()})


#: Text-field parsers, tried in order; the first that recognises the fields wins.
PARSERS: tuple[Callable[[Mapping[str, str]], GeneratorSettings | None], ...] = (
    lambda t: parse_a1111(t["parameters"]) if "parameters" in t else None,
    parse_comfyui, parse_novelai, parse_invokeai, parse_midjourney,
    lambda t: parse_a1111(t["UserComment"], "UserComment") if "UserComment" in t else None,
)


def generator_settings(texts: Mapping[str, str]) -> GeneratorSettings | None:
    """The first generator whose settings ``texts`` (field name -> text, already cut) hold."""
    for parse in PARSERS:
        if found := parse(texts):
            return found
    return None


def known_name(name: str | None, names: tuple[str, ...]) -> bool:
    """Whether a Software/CreatorTool value names one of ``names`` (case-insensitive, as a substring)."""
    low = (name or "").lower()
    return any(n in low for n in names)
