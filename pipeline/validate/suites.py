"""Great Expectations suites for the canonical frames, and the plain-language reason a
quarantined row is given for each expectation."""

from __future__ import annotations

from datetime import datetime

import great_expectations as gx
from great_expectations import expectations as gxe


def check(expectation: gxe.Expectation, reason: str) -> gxe.Expectation:
    """An expectation carrying, in its meta, the reason a failing row is quarantined with."""
    expectation.meta = {**(expectation.meta or {}), "reason": reason}
    return expectation


def _not_null(column: str, reason: str) -> gxe.Expectation:
    return check(gxe.ExpectColumnValuesToNotBeNull(column=column), reason)


def _in_set(column: str, values: list, reason: str) -> gxe.Expectation:
    return check(gxe.ExpectColumnValuesToBeInSet(column=column, value_set=values), reason)


def _not_after(column: str, until: datetime, reason: str) -> gxe.Expectation:
    return check(gxe.ExpectColumnValuesToBeBetween(column=column, max_value=until), reason)


ARRIVAL_NIGHT_END = "arrival_night_end"
UNREADABLE_SHARE = "unreadable_share"
# Row flags derived before the suite runs (validate_table), each judged by one expectation.
UNIT_MISSING = "unit_missing"                    # no unit where the concept map expects one
NEGATIVE_SIGN = "negative_sign"                  # a minus sign (-0 too) on a quantity that cannot be negative
AT_EXCLUSIVE_BOUND = "at_exclusive_lower_bound"  # 0 for a strictly positive quantity
OUTSIDE_STAY = "outside_stay"                    # charted a day or more outside its ICU stay
STAY_MARGIN_HOURS = 24
# Control characters (bar tab/newline/carriage return) and U+FFFD, the mark a failed decode leaves.
UNREADABLE_CHARACTERS = r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffd]"
MAX_UNREADABLE_SHARE = 0.01


def _charted_by_arrival_night() -> gxe.Expectation:
    """Chart time no later than the end of the night the row arrived in (a future clock entry).

    Judged on the row alone, not on the batch it came in, so a nightly run and a training run
    over all history quarantine exactly the same rows.
    """
    return check(gxe.ExpectColumnPairValuesAToBeGreaterThanB(
        column_A=ARRIVAL_NIGHT_END, column_B="time", or_equal=True, ignore_row_if="either_value_is_missing"),
        "charted after the night it arrived in")


def _never(flag: str, reason: str) -> gxe.Expectation:
    return check(gxe.ExpectColumnValuesToBeInSet(column=flag, value_set=[False]), reason)


def cohort_checks(until: datetime) -> list[gxe.Expectation]:
    return [
        _not_null("admit_time", "admission time is empty"),
        check(gxe.ExpectColumnValuesToBeUnique(column="stay_id"), "stay id appears more than once"),
        _not_null("age", "age is unknown"),
        check(gxe.ExpectColumnValuesToBeBetween(column="age", min_value=0, max_value=120), "age outside 0-120 years"),
        _not_null("sex", "sex is unknown"),
        _in_set("sex", ["F", "M"], "sex is not F or M"),
        _not_after("admit_time", until, "admitted after the prediction time"),
        check(gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="discharge_time", column_B="admit_time", or_equal=True, ignore_row_if="either_value_is_missing"),
            "discharged before admission"),
    ]


def events_checks(stays: list[int]) -> list[gxe.Expectation]:
    return [
        _not_null("stay_id", "no ICU stay for this row"),
        _in_set("stay_id", stays, "stay is not in the validated cohort"),
        _not_null("time", "chart time is empty"),
        _charted_by_arrival_night(),
        _not_null("value", "value is empty or not numeric"),
        check(gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="value", column_B="lower_bound", or_equal=True, ignore_row_if="either_value_is_missing"),
            "below the physiologically possible range"),
        check(gxe.ExpectColumnPairValuesAToBeGreaterThanB(
            column_A="upper_bound", column_B="value", or_equal=True, ignore_row_if="either_value_is_missing"),
            "above the physiologically possible range"),
        check(gxe.ExpectColumnPairValuesToBeEqual(
            column_A="source_unit", column_B="expected_unit", ignore_row_if="either_value_is_missing"),
            "unit differs from the concept map's unit"),
        check(gxe.ExpectCompoundColumnsToBeUnique(column_list=["source_table", "stay_id", "itemid", "time"]),
              "conflicting values for the same item and time"),
        check(gxe.ExpectColumnValuesToBeUnique(column="source_row_id"),
              "source row id appears more than once (two rows share one primary key)"),
        _never(UNIT_MISSING, "unit is empty but the concept map requires one"),
        _never(NEGATIVE_SIGN, "negative sign on a quantity that cannot be negative"),
        _never(AT_EXCLUSIVE_BOUND, "at the lower bound of a strictly positive quantity (0 is not possible)"),
        _never(OUTSIDE_STAY, f"charted more than {STAY_MARGIN_HOURS} h before ICU admission or after discharge"),
    ]


def record_checks(table: str, stays: list[int]) -> list[gxe.Expectation]:
    checks = [
        _not_null("stay_id", "no ICU stay for this record"),
        _in_set("stay_id", stays, "stay is not in the validated cohort"),
        _not_null("time", "record time is empty"),
        _charted_by_arrival_night(),
        check(gxe.ExpectColumnValuesToBeUnique(column="record_id"), "record id appears more than once"),
    ]
    if table == "notes":
        checks += [
            _not_null("text", "note text is empty"),
            check(gxe.ExpectColumnValueLengthsToBeBetween(column="text", min_value=1, max_value=200_000),
                  "note text is empty or longer than 200,000 characters"),
            check(gxe.ExpectColumnValuesToMatchRegex(column="text", regex=r"\S"), "note text is blank"),
            check(gxe.ExpectColumnValuesToBeBetween(column=UNREADABLE_SHARE, max_value=MAX_UNREADABLE_SHARE),
                  "note text is binary or was not decodable"),
        ]
    else:
        checks.append(_not_null("uri", "file path is empty"))
    return checks


def build_suite(name: str, checks: list[gxe.Expectation]) -> gx.ExpectationSuite:
    return gx.ExpectationSuite(name=name, expectations=checks)
