"""Analyze images: where their bytes go, what is wasted, and what an attacker finds in them.

:func:`analyze_image` reads an image once and returns an :class:`ImageAnalysis`;
:func:`analyze_device_set` combines the analyses of the images that one device stores; the
policy module turns a result into pass or fail. Reports (text, JSON, HTML) live in the
``report_*`` modules and only render results.
"""

from edgetrim.analyze.analysis import analyze_image, chain_ids
from edgetrim.analyze.device import DeviceSet, analyze_device_set
from edgetrim.analyze.policy import PolicyFailedError, Rule, evaluate, load_rules, parse_rule
from edgetrim.analyze.result import Category, ImageAnalysis, WasteSummary

__all__ = [
    "Category",
    "DeviceSet",
    "ImageAnalysis",
    "PolicyFailedError",
    "Rule",
    "WasteSummary",
    "analyze_device_set",
    "analyze_image",
    "chain_ids",
    "evaluate",
    "load_rules",
    "parse_rule",
]
