"""CI rules: parsing, units and percentages, TOML files, and evaluation on a known image."""

from __future__ import annotations

import pytest

from edgetrim.analyze import analyze_image, evaluate, load_rules, parse_rule
from edgetrim.analyze.policy import PolicyFailedError, check
from edgetrim.errors import InvalidOptionError
from tests.analyze.synthetic import file, layer_tar, make_image, whiteout


@pytest.mark.parametrize(
    ("text", "metric", "op", "threshold", "percent"),
    [
        ("wasted_bytes > 20MB", "wasted_bytes", ">", 20_000_000, False),
        ("wasted_bytes>20MiB", "wasted_bytes", ">", 20 * 1024 * 1024, False),
        ("duplicate_bytes >= 1.5 kB", "duplicate_bytes", ">=", 1500, False),
        ("efficiency < 0.9", "efficiency", "<", 0.9, False),
        ("likely_unused_bytes > 50%", "likely_unused_bytes", ">", 0.5, True),
        ("setuid_files != 0", "setuid_files", "!=", 0, False),
        ("runs_as_root == 1", "runs_as_root", "==", 1, False),
    ],
)
def test_parse_rule(text, metric, op, threshold, percent):
    rule = parse_rule(text)
    assert (rule.metric, rule.op, rule.percent) == (metric, op, percent)
    assert rule.threshold == pytest.approx(threshold)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("wasted > 20MB", "unknown metric 'wasted'"),
        ("wasted_bytes 20MB", "expected METRIC OPERATOR VALUE"),
        ("wasted_bytes > 20 parsecs", "unknown unit 'parsecs'"),
        ("efficiency < 90%", "efficiency is a plain number"),
        ("wasted_bytes > -1", "expected METRIC OPERATOR VALUE"),
    ],
)
def test_malformed_rule_names_the_rule(text, message):
    with pytest.raises(InvalidOptionError) as error:
        parse_rule(text)
    assert repr(text) in str(error.value)
    assert message in str(error.value)


def test_rules_file(tmp_path):
    path = tmp_path / "rules.toml"
    path.write_text('fail-if = ["wasted_bytes > 20MB", "efficiency < 0.9"]\n')
    assert [rule.text for rule in load_rules(path)] == ["wasted_bytes > 20MB", "efficiency < 0.9"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('fail-if = "wasted_bytes > 1"\n', "must be a list of rule strings"),
        ('fail-if = ["wasted_bytes >> 1"]\n', "invalid rule 'wasted_bytes >> 1'"),
        ("fail_if = []\n", "unknown key 'fail_if'"),
        ("fail-if = [\n", "cannot read the rules file"),
    ],
)
def test_bad_rules_file(tmp_path, content, message):
    path = tmp_path / "rules.toml"
    path.write_text(content)
    with pytest.raises(InvalidOptionError) as error:
        load_rules(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_missing_rules_file(tmp_path):
    with pytest.raises(InvalidOptionError, match="rules file not found"):
        load_rules(tmp_path / "absent.toml")


def test_evaluate_on_known_image():
    # 100 bytes stored: 60 deleted by the whiteout, 40 in use.
    image = make_image(
        layer_tar(file("big", b"b" * 60), file("small", b"s" * 40)), layer_tar(whiteout("big"))
    )
    analysis = analyze_image(image)
    rules = [
        parse_rule(text)
        for text in (
            "wasted_bytes > 59B",
            "wasted_bytes > 60B",
            "deleted_bytes >= 60%",
            "efficiency < 0.4",
            "efficiency <= 0.4",
        )
    ]
    outcomes = evaluate(rules, [analysis])
    assert [outcome.failed for outcome in outcomes] == [True, False, True, False, True]
    assert outcomes[2].limit == pytest.approx(60)
    with pytest.raises(PolicyFailedError) as error:
        check(outcomes)
    assert error.value.exit_code == 1
    assert "3 rule(s) failed" in str(error.value)
    assert "'wasted_bytes > 59B'" in str(error.value)
    check(outcomes[1:2])  # a passing rule raises nothing


def test_byte_limits_are_whole_bytes():
    # 100 bytes stored: 60 deleted by the whiteout, 40 in use.
    image = make_image(
        layer_tar(file("big", b"b" * 60), file("small", b"s" * 40)), layer_tar(whiteout("big"))
    )
    analysis = analyze_image(image)
    # Each limit is rounded the way that keeps the verdict of the exact limit.
    cases = [
        ("deleted_bytes > 59.5%", 59, True),
        ("deleted_bytes <= 59.5%", 59, False),
        ("deleted_bytes < 60.5%", 61, True),
        ("deleted_bytes >= 60.5%", 61, False),
        ("deleted_bytes == 60.4%", 60, True),
        # 0.29 * 100 is 28.999999999999996 in floats, but the limit is exactly 29 bytes.
        ("wasted_bytes > 29%", 29, True),
        ("wasted_bytes > 0.0595kB", 59, True),
    ]
    outcomes = evaluate([parse_rule(text) for text, _, _ in cases], [analysis])
    for (text, limit, failed), outcome in zip(cases, outcomes, strict=True):
        assert type(outcome.limit) is int, text
        assert type(outcome.value) is int, text
        assert outcome.limit == limit, text
        assert outcome.failed is failed, text


def test_plain_number_limits_unchanged():
    image = make_image(layer_tar(file("small", b"s" * 40)))
    outcome = evaluate([parse_rule("efficiency < 0.9")], [analyze_image(image)])[0]
    assert outcome.limit == pytest.approx(0.9)
    assert outcome.value == pytest.approx(1.0)
