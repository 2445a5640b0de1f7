"""The exact wording of every check captureq reports, in one place (Model Monitor's texts).

Model Monitor's ``constraint_violations.json`` descriptions are matched word for word where real
output is known (data type, numerical drift, model-quality metrics); the others follow the same
pattern. Percentages and distances print as Model Monitor's Scala code prints a double
(``100.0``, ``99.64592817400101``): the shortest text that reads back as the same number, which
is Python's ``repr`` of a float.

>>> describe("data_type_check", expected="Integral", expected_match=1.0, observed=0.9964592817400101)
'Data type match requirement is not met. Expected data type: Integral, Expected match: 100.0%. Observed: Only 99.64592817400101% of data is Integral.'
>>> describe("baseline_drift_check", kind="Numerical", distance=0.27, threshold=0.1)
'Numerical distance: 0.27 exceeds numerical threshold: 0.1'
>>> describe("LessThanThreshold", metric="f1", value=0.61, threshold=0.66)
'Metric f1 with 0.61 was LessThanThreshold 0.66'
"""

from __future__ import annotations

TEMPLATES: dict[str, str] = {
    "data_type_check": (
        "Data type match requirement is not met. Expected data type: {expected}, "
        "Expected match: {expected_match}%. Observed: Only {observed}% of data is {expected}."
    ),
    "completeness_check": (
        "Data completeness requirement is not met. Expected completeness: {expected}%. "
        "Observed: Only {observed}% of data is complete."
    ),
    "baseline_drift_check": "{kind} distance: {distance} exceeds {kind_lower} threshold: {threshold}",
    # bias drift: Clarify's text, then what was compared
    "bias_drift_check": (
        "Value {value} does not meet the constraint requirement: {metric} is farther from its "
        "ideal than the baseline value {baseline} (tolerance {tolerance})"
    ),
    "missing_column_check": (
        "There are missing columns in current dataset. Number of columns in current dataset: "
        "{current}, Number of columns in baseline constraints: {baseline}"
    ),
    "extra_column_check": (
        "There are extra columns in current dataset. Number of columns in current dataset: "
        "{current}, Number of columns in baseline constraints: {baseline}"
    ),
    "categorical_values_check": (
        "Categorical value match requirement is not met. Expected match: {expected}%. "
        "Observed: Only {observed}% of data is within the baseline domain."
    ),
    # model quality: constraint_check_type is the comparison operator itself
    "LessThanThreshold": "Metric {metric} with {value} was LessThanThreshold {threshold}",
    "GreaterThanThreshold": "Metric {metric} with {value} was GreaterThanThreshold {threshold}",
}


def number(x: float) -> str:
    """A double as Model Monitor prints it: ``100.0``, ``0.1``, ``99.64592817400101``."""
    return repr(float(x))


def percent(ratio: float) -> str:
    """A share (0–1) as Model Monitor's percentage text."""
    return number(100.0 * float(ratio))


def describe(check_type: str, **values: object) -> str:
    """The description of a failed ``check_type``; ratios/distances are formatted here."""
    v = dict(values)
    if check_type == "data_type_check":
        v["expected_match"] = percent(v["expected_match"])
        v["observed"] = percent(v["observed"])
    elif check_type in ("completeness_check", "categorical_values_check"):
        v["expected"] = percent(v["expected"])
        v["observed"] = percent(v["observed"])
    elif check_type == "baseline_drift_check":
        v["kind_lower"] = str(v["kind"]).lower()
        v["distance"] = number(v["distance"])
        v["threshold"] = number(v["threshold"])
    elif check_type == "bias_drift_check":
        v["value"] = number(v["value"])
        v["baseline"] = number(v["baseline"])
        v["tolerance"] = number(v["tolerance"])
    elif check_type in ("LessThanThreshold", "GreaterThanThreshold"):
        v["value"] = number(v["value"])
        v["threshold"] = number(v["threshold"])
    return TEMPLATES[check_type].format(**v)
