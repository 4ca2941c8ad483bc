"""Build the JSON document of ``edgetrim analyze --json``, described by ``schema/analyze-v1.json``.

``schema`` names the document type and its major version. A change that removes or renames a
field, or changes its meaning, makes a new version and a new schema file; added fields keep
the version.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from edgetrim import __version__
from edgetrim.analyze.device import DeviceSet
from edgetrim.analyze.policy import RuleOutcome
from edgetrim.analyze.result import SCHEMA_ID, SCHEMA_VERSION, ImageAnalysis, image_to_json


def load_schema() -> dict[str, Any]:
    """Return the JSON Schema that the output of :func:`build_document` follows."""
    text = resources.files("edgetrim.analyze").joinpath("schema/analyze-v1.json").read_text()
    return json.loads(text)


def build_document(
    analyses: list[ImageAnalysis],
    device: DeviceSet | None,
    outcomes: list[RuleOutcome] | None,
    *,
    top: int,
) -> dict[str, Any]:
    """Return the whole document: images, the device set if any, and the rule outcomes if any."""
    return {
        "schema": SCHEMA_ID,
        "schema_version": SCHEMA_VERSION,
        "edgetrim_version": __version__,
        "images": [image_to_json(analysis, top=top) for analysis in analyses],
        "device_set": _device_json(device) if device else None,
        "policy": _policy_json(outcomes) if outcomes is not None else None,
    }


def _device_json(device: DeviceSet) -> dict[str, Any]:
    return {
        "images": device.images,
        "total_bytes": device.total_bytes,
        "device_bytes": device.device_bytes,
        "layers": device.layers,
        "unique_layers": device.unique_layers,
        "identical_files": device.identical_files,
        "identical_bytes": device.identical_bytes,
        "lower_bound_bytes": device.lower_bound_bytes,
        "saving_bytes": device.saving_bytes,
    }


def _policy_json(outcomes: list[RuleOutcome]) -> dict[str, Any]:
    return {
        "failed": sum(1 for outcome in outcomes if outcome.failed),
        "outcomes": [
            {
                "rule": outcome.rule.text,
                "image": outcome.source,
                "metric": outcome.rule.metric,
                "value": outcome.value,
                "limit": outcome.limit,
                "failed": outcome.failed,
            }
            for outcome in outcomes
        ],
    }
