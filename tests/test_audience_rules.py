"""Audience rules (`serving.activation.rules`): the language on a hand-written frame, every kind of rejected
input, and a property test against a row-by-row reference evaluator."""

from __future__ import annotations

import operator
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from serving.activation import rules
from serving.activation.rules import RuleError, parse_rule

COLUMNS = {"propensity_bucket": "text", "recency_days": "number", "frequency": "number", "churn_risk": "text",
           "consent_email": "bool", "consent_zalo": "bool"}

# Five customers, one of each situation the rules must tell apart; Hoa's and Tuấn's gaps are missing values.
FRAME = pd.DataFrame(
    {"propensity_bucket": ["High", "High", "Medium", "Low", None],
     "recency_days": [30, 120, 90, np.nan, 5],
     "frequency": [4, 1, 2, 0, 9],
     "churn_risk": ["Low", "High", None, "Medium", "high"],
     "consent_email": [True, False, True, None, True],
     "consent_zalo": [True, True, False, False, False]},
    index=pd.Index(["lan", "minh", "hoa", "tuan", "mai"], name="customer_id"))


def who(text: str, frame: pd.DataFrame = FRAME, functions=None, allowed=()) -> list[str]:
    selected = parse_rule(text, COLUMNS, allowed).evaluate(frame, functions)
    return list(selected.index[selected])


def test_the_readme_example():
    rule = parse_rule("propensity_bucket == 'High' and recency_days <= 90", COLUMNS)
    selected = rule.evaluate(FRAME)
    assert selected.dtype == bool and selected.index.equals(FRAME.index) and not selected.isna().any()
    assert list(selected.index[selected]) == ["lan"]
    assert rule.columns == {"propensity_bucket", "recency_days"} and rule.functions == frozenset()


def test_not_binds_tighter_than_and_which_binds_tighter_than_or():
    assert who("consent_zalo or consent_email and frequency > 3") == ["lan", "minh", "mai"]
    assert who("(consent_zalo or consent_email) and frequency > 3") == ["lan", "mai"]
    assert who("not consent_zalo and frequency > 1") == ["hoa", "mai"]
    assert who("not (consent_zalo and frequency > 1)") == ["minh", "hoa", "tuan", "mai"]
    assert who("not frequency > 1") == ["minh", "tuan"]  # not (frequency > 1)


def test_comparisons_take_columns_or_literals_on_either_side():
    assert who("90 >= recency_days") == who("recency_days <= 90") == ["lan", "hoa", "mai"]
    assert who("frequency > recency_days") == ["mai"]
    assert who("recency_days > -1.5 and recency_days < 31") == ["lan", "mai"]
    assert who("1 == 1") == list(FRAME.index) and who("true") == list(FRAME.index) and who("false") == []


def test_in_and_not_in_take_bracketed_or_parenthesised_lists():
    assert who("propensity_bucket in ['High', 'Medium']") == ["lan", "minh", "hoa"]
    assert who('propensity_bucket in ("High", "Medium",)') == ["lan", "minh", "hoa"]
    assert who("propensity_bucket not in ('High')") == ["hoa", "tuan"]
    assert who("frequency in [0, 9, 2.5]") == ["tuan", "mai"]
    assert who("frequency in []") == [] and who("frequency not in []") == list(FRAME.index)


def test_text_comparison_is_exact_and_case_sensitive():
    assert who("churn_risk == 'High'") == ["minh"]
    assert who("churn_risk == 'high'") == ["mai"]
    assert who("churn_risk == 'High '") == []


def test_a_missing_value_leaves_the_customer_out_whatever_the_comparison():
    # Hoa's churn_risk is missing: no comparison on it selects her, not even negated (SQL's WHERE).
    assert "hoa" not in who("churn_risk == 'High'") + who("churn_risk != 'High'") + who("not churn_risk == 'High'")
    assert "hoa" not in who("churn_risk in ['Low']") + who("churn_risk not in ['Low']")
    assert "tuan" not in who("recency_days > 0") + who("not (recency_days > 0)") + who("recency_days != 1")
    assert who("is_missing(churn_risk) or churn_risk != 'High'") == ["lan", "hoa", "tuan", "mai"]
    assert who("not is_missing(recency_days) and is_missing(propensity_bucket)") == ["mai"]


def test_and_or_follow_three_valued_logic():
    # Tuấn: recency unknown. unknown or true = true; unknown and false = false, so its negation is true.
    assert "tuan" in who("recency_days > 0 or frequency == 0")
    assert "tuan" in who("not (recency_days > 0 and frequency > 0)")
    assert "tuan" not in who("not (recency_days > 0 or frequency > 0)")
    assert "tuan" not in who("(recency_days > 0) == true") + who("(recency_days > 0) == false")


def test_bool_columns_are_conditions_and_compare_with_true_or_false():
    assert who("consent_email") == ["lan", "hoa", "mai"] == who("consent_email == true") == who("consent_email == True")
    assert who("not consent_email") == ["minh"] == who("consent_email == false") == who("consent_email != true")
    assert who("consent_email != consent_zalo") == ["minh", "hoa", "mai"]
    assert who("consent_email in [false]") == ["minh"]


def test_columns_of_other_dtypes_than_the_usual_evaluate_alike():
    frame = FRAME.astype({"consent_email": "boolean", "recency_days": "Int64", "churn_risk": "str"})
    objects = FRAME.astype(object).where(FRAME.notna(), None)
    for text in ("consent_email and recency_days < 100", "churn_risk != 'Low' or not consent_email"):
        assert who(text, frame) == who(text, objects) == who(text)


class StubLookalike:
    """A test double for a lookalike function: a fixed membership per seed, and a log of its calls."""

    def __init__(self):
        self.calls = []

    def __call__(self, frame: pd.DataFrame, seed: str, k: int) -> pd.Series:
        self.calls.append((seed, k))
        members = {"vip": ["lan", "mai"], "churned": ["minh"]}[seed]
        return pd.Series(frame.index.isin(members), index=frame.index)


def test_function_calls_take_literals_and_are_called_once_per_distinct_call():
    stub = StubLookalike()
    text = "lookalike('vip', 500) and not lookalike('churned', 500) or lookalike('vip', 500) and consent_zalo"
    rule = parse_rule(text, COLUMNS, ["lookalike"])
    assert rule.functions == {"lookalike"} and rule.columns == {"consent_zalo"}
    assert rule.calls == (("lookalike", ("vip", 500)), ("lookalike", ("churned", 500)))
    selected = rule.evaluate(FRAME, {"lookalike": stub})
    assert list(selected.index[selected]) == ["lan", "mai"]
    assert stub.calls == [("vip", 500), ("churned", 500)]
    assert parse_rule("f(-1, 0.5, true, 'x', [1, 2])", COLUMNS, {"f": None}).calls == (
        ("f", (-1, 0.5, True, "x", (1, 2))),)


def test_customers_a_function_leaves_out_or_answers_missing_for_are_unknown():
    def partial(frame, seed):
        return pd.Series([True, None], index=["lan", "minh"], dtype=object)

    assert who("partial('vip')", functions={"partial": partial}, allowed=["partial"]) == ["lan"]
    assert who("not partial('vip')", functions={"partial": partial}, allowed=["partial"]) == []


def test_a_function_that_does_not_answer_a_series_is_a_type_error():
    with pytest.raises(TypeError, match="not a bool Series"):
        who("f()", functions={"f": lambda frame: [True] * len(frame)}, allowed=["f"])


def test_evaluation_reads_only_the_named_columns_and_names_one_that_is_absent():
    assert who("frequency > 3", FRAME[["frequency"]]) == ["lan", "mai"]
    with pytest.raises(RuleError, match="column 'churn_risk' is not in the data") as error:
        who("frequency > 3 and churn_risk == 'Low'", FRAME[["frequency"]])
    assert error.value.position == len("frequency > 3 and ")


def test_a_function_allowed_but_not_given_at_evaluation_is_an_error():
    with pytest.raises(RuleError, match="lookalike is allowed in rules but was not given"):
        who("lookalike('vip', 5)", allowed=["lookalike"])


def test_a_column_holding_other_values_than_its_kind_is_an_error():
    with pytest.raises(RuleError, match="'recency_days' is declared number"):
        who("recency_days > 1", FRAME.assign(recency_days="soon"))


def test_an_unknown_column_points_at_it_and_suggests_close_names():
    with pytest.raises(RuleError) as error:
        parse_rule("propensity_bucket == 'High' and recency_day <= 90", COLUMNS)
    message = str(error.value)
    assert "unknown column 'recency_day'; did you mean recency_days?" in message
    assert "nhip audience columns" in message
    reason, quoted, caret = message.split("\n")
    assert quoted == "  propensity_bucket == 'High' and recency_day <= 90"
    assert caret.index("^") == quoted.index("recency_day") == 2 + error.value.position


def test_a_rule_error_without_a_position_is_its_reason_alone():
    error = RuleError("lookalike takes an audience name and a count")
    assert str(error) == error.reason and error.position is None and isinstance(error, ValueError)


def test_the_caret_points_into_the_right_line_of_a_rule_written_over_lines():
    with pytest.raises(RuleError) as error:
        parse_rule("consent_email\n  and frequency >= 'x'", COLUMNS)
    _, quoted, caret = str(error.value).split("\n")
    assert quoted == "    and frequency >= 'x'" and caret.index("^") == quoted.index("'x'")


REJECTED = [
    ("", "the rule is empty"),
    ("   ", "the rule is empty"),
    ("nope(1)", "unknown function 'nope'; the allowed functions are is_missing, lookalike"),
    ("lookalik('vip', 5)", "did you mean lookalike?"),
    ("__import__('os').system('x')", "unknown function '__import__'"),
    ("consent_email.real", "attribute access"),
    ("propensity_bucket.lower() == 'high'", "attribute access"),
    ("frequency[0] > 1", "subscripts"),
    ("recency_days + 1 > 2", "arithmetic"),
    ("recency_days - 1 > 2", "arithmetic"),
    ("1 + 2", "arithmetic"),
    ("frequency > 1; consent_email", "';' is not part of the rule language"),
    ("frequency = 1", "use == to compare"),
    ("lambda: consent_email", "unknown column 'lambda'"),
    ("consent_email && consent_zalo", "use and"),
    ("consent_email || consent_zalo", "use or"),
    ("!consent_email", "use != or not"),
    ("churn_risk == 'High", "unterminated text"),
    ("frequency > 1 consent_email", "expected and, or, or the end of the rule"),
    ("frequency > 1 )", "expected and, or, or the end of the rule"),
    ("(frequency > 1", "expected ')' to close the '(' at character 1"),
    ("frequency >", "after '>', found the end of the rule"),
    ("and consent_email", "expected a condition, found 'and'"),
    ("frequency", "a rule needs a condition, but frequency (a number column) is not one"),
    ("frequency and consent_email", "'and' needs a condition"),
    ("not churn_risk", "'not' needs a condition"),
    ("recency_days > '90'", "write the number without quotes: 90"),
    ("propensity_bucket == 1", "cannot be compared with the number 1"),
    ("consent_email == 1", "cannot be compared with the number 1"),
    ("propensity_bucket < 'M'", "'<' needs numbers"),
    ("consent_email > false", "'>' needs numbers"),
    ("1 < frequency < 5", "comparisons do not chain"),
    ("churn_risk in ['High', 2]", "cannot be compared with the number 2"),
    ("churn_risk in churn_risk", "expected a list after in"),
    ("churn_risk in [High]", "lists hold literals, not columns"),
    ("churn_risk not 'High'", "expected in after not"),
    ("churn_risk in [['High']]", "lists hold literals, not lists"),
    ("['High'] == churn_risk", "a list only follows in / not in"),
    ("lookalike(vip, 5)", "literals (numbers, 'text', true/false, lists), not columns"),
    ("lookalike", "lookalike is a function"),
    ("frequency(1) > 0", "frequency is a column, not a function"),
    ("is_missing('churn_risk')", "is_missing takes a column name"),
    ("is_missing(nope)", "unknown column 'nope'"),
    ("CONSENT_EMAIL", "did you mean consent_email?"),
    ("consent_email AND consent_zalo", "write and in lower case"),
    ("AND", "write and in lower case"),
    ("frequency > 1e3", "malformed number '1e3'"),
    ("frequency > .5", "leading digit"),
    ("frequency > 3days", "malformed number '3days'"),
    ("tần_suất > 1", "'tần_suất' is not a column name: names use A-Z"),
    ("frequency > ٣", "is not part of the rule language"),
    ("(" * 70 + "true" + ")" * 70, "nests deeper than 64"),
    ("not " * 70 + "true", "nests deeper than 64"),
]


@pytest.mark.parametrize(("text", "reason"), REJECTED)
def test_what_is_not_in_the_language_is_rejected_with_a_reason(text, reason):
    with pytest.raises(RuleError) as error:
        parse_rule(text, COLUMNS, ["lookalike"])
    assert reason in error.value.reason
    assert 0 <= error.value.position <= len(text)
    assert isinstance(error.value, ValueError)


def test_an_injection_attempt_never_runs(monkeypatch):
    ran = []
    monkeypatch.setattr("os.system", lambda command: ran.append(command))
    for text in ("__import__('os').system('x')", "lookalike('vip', 5).__class__", "().__class__.__bases__"):
        with pytest.raises(RuleError):
            parse_rule(text, COLUMNS, ["lookalike"])
    assert ran == []


def test_the_module_never_hands_text_to_python():
    source = Path(rules.__file__).read_text(encoding="utf-8")
    assert not any(word in source for word in ("eval(", "exec(", "compile(", "import ast", "from ast"))


def test_the_caller_declares_known_kinds_and_no_is_missing_of_its_own():
    with pytest.raises(ValueError, match="kind 'date'"):
        parse_rule("true", {"first_seen": "date"})
    with pytest.raises(ValueError, match="is_missing is built in"):
        parse_rule("true", COLUMNS, ["is_missing"])


def test_a_million_customers_take_well_under_a_second():
    n = 1_000_000
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({"propensity_bucket": rng.choice(np.array(["High", "Medium", "Low"]), n),
                          "recency_days": np.where(rng.random(n) < 0.1, np.nan, rng.integers(0, 400, n)),
                          "consent_email": rng.random(n) < 0.6})
    rule = parse_rule("propensity_bucket == 'High' and recency_days <= 90 and consent_email", COLUMNS)
    start = time.perf_counter()
    selected = rule.evaluate(frame)
    assert time.perf_counter() - start < 1.0
    expected = (frame.propensity_bucket == "High") & (frame.recency_days <= 90) & frame.consent_email
    assert selected.equals(expected)


# -- the property: random rules on random frames agree with a row-by-row reference ------------------------

NUMBERS = ["n1", "n2"]
GENERATED = {"n1": "number", "n2": "number", "t1": "text", "b1": "bool"}
OPS = {"==": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt,
       ">=": operator.ge}


def flag(frame: pd.DataFrame, k: int) -> pd.Series:
    """A deterministic function of the row position; for k == 3 some answers are missing."""
    values = [None if k == 3 and i % 3 == 1 else i % k == 0 for i in range(len(frame))]
    return pd.Series(values, index=frame.index, dtype=object)


def flag_reference(i: int, k: int):
    return None if k == 3 and i % 3 == 1 else i % k == 0


def text_literal(value: str) -> str:
    return f'"{value}"' if "'" in value else f"'{value}'"


number_literals = st.sampled_from([-1, 0, 1, 2, 2.5, 3])
text_values = st.sampled_from(["a", "b", "A", "it's"])
number_operands = st.one_of(st.sampled_from([("col", c) for c in NUMBERS]), number_literals.map(lambda v: ("lit", v)))
text_operands = st.one_of(st.just(("col", "t1")), text_values.map(lambda v: ("lit", v)))
bool_operands = st.one_of(st.just(("col", "b1")), st.booleans().map(lambda v: ("lit", v)))

atoms = st.one_of(
    st.tuples(st.just("cmp"), st.sampled_from(list(OPS)), number_operands, number_operands),
    st.tuples(st.just("cmp"), st.sampled_from(["==", "!="]), text_operands, text_operands),
    st.tuples(st.just("cmp"), st.sampled_from(["==", "!="]), bool_operands, bool_operands),
    st.tuples(st.just("in"), number_operands, st.lists(number_literals, max_size=3), st.booleans()),
    st.tuples(st.just("in"), text_operands, st.lists(text_values, max_size=3), st.booleans()),
    st.just(("col", "b1")),
    st.tuples(st.just("missing"), st.sampled_from(list(GENERATED))),
    st.tuples(st.just("call"), st.sampled_from([1, 2, 3])),
    st.booleans().map(lambda v: ("lit", v)),
)
trees = st.recursive(atoms, lambda inner: st.one_of(
    st.tuples(st.just("not"), inner),
    st.tuples(st.sampled_from(["and", "or"]), inner, inner),
    st.tuples(st.just("paren"), inner),
    st.tuples(st.just("is"), inner, st.booleans()),
), max_leaves=12)

PRECEDENCE = {"or": 1, "and": 2, "not": 3}


def show(tree, needs: int = 0) -> str:
    """The rule's text, with parentheses only where precedence needs them (and where the tree has any)."""
    kind = tree[0]
    if kind in ("and", "or"):
        text = f"{show(tree[1], PRECEDENCE[kind])} {kind} {show(tree[2], PRECEDENCE[kind])}"
    elif kind == "not":
        text = f"not {show(tree[1], PRECEDENCE['not'])}"
    elif kind == "paren":
        return f"({show(tree[1])})"
    elif kind == "is":
        return f"({show(tree[1])}) == {str(tree[2]).lower()}"
    elif kind == "cmp":
        return f"{operand(tree[2])} {tree[1]} {operand(tree[3])}"
    elif kind == "in":
        values = ", ".join(operand(("lit", v)) for v in tree[2])
        return f"{operand(tree[1])} {'not in' if tree[3] else 'in'} [{values}]"
    elif kind == "missing":
        return f"is_missing({tree[1]})"
    elif kind == "call":
        return f"flag({tree[1]})"
    else:
        return operand(tree)
    return f"({text})" if PRECEDENCE[kind] < needs else text


def operand(node) -> str:
    kind, value = node
    if kind == "col":
        return value
    if isinstance(value, bool):
        return str(value).lower()
    return text_literal(value) if isinstance(value, str) else str(value)


def reference(tree, row: dict, i: int):
    """True, False or None (unknown) for one row, by the documented rules."""
    kind = tree[0]
    if kind == "lit":
        return tree[1]
    if kind == "col":
        return row[tree[1]]
    if kind == "missing":
        return row[tree[1]] is None
    if kind == "call":
        return flag_reference(i, tree[1])
    if kind == "paren":
        return reference(tree[1], row, i)
    if kind == "cmp":
        a, b = reference(tree[2], row, i), reference(tree[3], row, i)
        return None if a is None or b is None else OPS[tree[1]](a, b)
    if kind == "in":
        a = reference(tree[1], row, i)
        return None if a is None else (a in tree[2]) != tree[3]
    if kind == "is":
        a = reference(tree[1], row, i)
        return None if a is None else a == tree[2]
    if kind == "not":
        a = reference(tree[1], row, i)
        return None if a is None else not a
    a, b = reference(tree[1], row, i), reference(tree[2], row, i)
    if kind == "and":
        return False if a is False or b is False else None if a is None or b is None else True
    return True if a is True or b is True else None if a is None or b is None else False


@st.composite
def frames(draw):
    """Python values per column (None = missing), and a frame holding them in one of the dtypes a column of
    that kind arrives in."""
    n = draw(st.integers(0, 7))
    values = {c: draw(st.lists(st.one_of(st.none(), number_literals), min_size=n, max_size=n)) for c in NUMBERS}
    values["t1"] = draw(st.lists(st.one_of(st.none(), text_values), min_size=n, max_size=n))
    values["b1"] = draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=n, max_size=n))
    columns = {}
    for c in NUMBERS:
        dtype = draw(st.sampled_from(["float64", "Int64", "object"]))
        if dtype == "Int64" and any(isinstance(v, float) for v in values[c]):
            dtype = "float64"
        columns[c] = pd.Series(values[c], dtype=dtype)
    columns["t1"] = pd.Series(values["t1"], dtype=draw(st.sampled_from(["object", "str"])))
    bool_dtypes = ["object", "boolean"] + ([] if None in values["b1"] else ["bool"])
    columns["b1"] = pd.Series(values["b1"], dtype=draw(st.sampled_from(bool_dtypes)))
    frame = pd.DataFrame(columns)
    frame.index = pd.Index([f"c{i}" for i in range(n)], name="customer_id")
    return values, frame


@settings(max_examples=200, deadline=None)
@given(trees, frames())
def test_random_rules_agree_with_a_row_by_row_reference(tree, drawn):
    values, frame = drawn
    text = show(tree)
    selected = parse_rule(text, GENERATED, ["flag"]).evaluate(frame, {"flag": flag})
    rows = [{c: values[c][i] for c in values} for i in range(len(frame))]
    assert selected.dtype == bool and selected.index.equals(frame.index)
    assert selected.tolist() == [reference(tree, row, i) is True for i, row in enumerate(rows)], text


SOUP = ["frequency", "churn_risk", "consent_email", "lookalike", "is_missing", "and", "or", "not", "in",
        "true", "False", "==", "!=", "<", ">=", "(", ")", "[", "]", ",", "-", "1", "2.5", "'High'", '"x',
        ".", "+", "=", ";", "_", "é", "\n"]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(SOUP), max_size=12), st.sampled_from([" ", ""]))
def test_any_text_parses_to_a_rule_that_evaluates_or_is_a_rule_error(words, gap):
    text = gap.join(words)
    try:
        rule = parse_rule(text, COLUMNS, ["lookalike"])
    except RuleError as error:
        assert 0 <= error.position <= len(text)
        return
    stub = StubLookalike()
    selected = rule.evaluate(FRAME, {"lookalike": lambda frame, *args: stub(frame, "vip", 500)})
    assert selected.dtype == bool and selected.index.equals(FRAME.index)
