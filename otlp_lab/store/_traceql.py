"""A TraceQL subset compiled to DuckDB SQL over ``unique_spans``.

Supported (Tempo's semantics, evaluated per trace):

* spanset filters ``{ ... }`` with intrinsics ``name``, ``status`` (``error``/``ok``/``unset``),
  ``statusMessage``, ``kind`` (``server``, ``client``, ``producer``, ``consumer``, ``internal``,
  ``unspecified``), ``duration``, their ``span:`` forms, and the trace-level ``trace:duration``,
  ``trace:rootName``, ``trace:rootService`` (also ``traceDuration``, ``rootName``,
  ``rootServiceName``); attributes ``span.x``, ``resource.x``, unscoped ``.x`` (span first, then
  resource) and quoted names (``span."a b"``); ``nil``;
* ``&&``, ``||``, ``!`` and parentheses inside a filter; ``=``, ``!=``, ``>``, ``>=``, ``<``,
  ``<=``, ``=~``, ``!~`` (regular expressions are fully anchored, as in Tempo);
* between spansets: ``&&`` (the trace has both; the spans of both), ``||``, and the structural
  ``>>`` (right-hand spans with an ancestor on the left), ``>`` (with their parent on the left),
  ``<<`` (that are an ancestor of a left-hand span), ``<`` (the parent of one), ``~`` (with a
  sibling on the left); each also negated (``!>>``, ``!>``, ``!<<``, ``!<``, ``!~``: the
  right-hand spans in no such relation) and as a union (``&>>``, ``&>``, ``&<<``, ``&<``,
  ``&~``: the spans of both sides that are in one); as in Tempo's grammar, structural operators bind tighter
  than ``&&`` and ``||``, which share one precedence and group from the left
  (``a || b && c`` is ``(a || b) && c``, inside a filter too);
* pipelines: ``count()``, ``avg(f)``, ``min(f)``, ``max(f)``, ``sum(f)`` with an optional
  comparison, ``by(f, ...)``, ``select(f, ...)`` and a further ``{ ... }`` filter.

Literals: strings in double quotes or backticks, integers, floats, ``true``/``false``, and
durations (``500ms``, ``1.5s``, ``2m``; ``ns``, ``us``, ``µs``, ``ms``, ``s``, ``m``, ``h``).
Numbers compare with attributes that hold numbers (or numeric text). Aggregates of
``duration`` are in nanoseconds.

Anything else (arithmetic, ``rate()`` and other metrics functions, ``coalesce()``, ``parent.``,
``event.``, ``link.`` and ``instrumentation.`` scopes, ``nestedSet*``, ...) raises :class:`~otlp_lab.errors.TraceQLError` naming the part.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from otlp_lab.errors import TraceQLError

DURATION_NS = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
STATUS = {"error": "ERROR", "ok": "OK", "unset": "UNSET"}
KIND = {k: k.upper() for k in ("server", "client", "producer", "consumer", "internal", "unspecified")}
# intrinsic -> (SQL expression on alias u, type)
INTRINSICS: dict[str, tuple[str, str]] = {
    "name": ("u.name", "str"),
    "status": ("u.status_code", "status"),
    "statusMessage": ("u.status_message", "str"),
    "kind": ("u.kind", "kind"),
    "duration": ("u.duration_ns", "duration"),
    "trace:duration": ("t._trace_duration_ns", "duration"),
    "trace:rootName": ("t._root_name", "str"),
    "trace:rootService": ("t._root_service", "str"),
    "traceDuration": ("t._trace_duration_ns", "duration"),
    "rootName": ("t._root_name", "str"),
    "rootServiceName": ("t._root_service", "str"),
}
for _k in ("name", "status", "statusMessage", "kind", "duration"):
    INTRINSICS[f"span:{_k}"] = INTRINSICS[_k]
UNSUPPORTED_SCOPES = ("event", "link", "instrumentation", "parent", "span:", "trace:", "event:", "link:")
AGGREGATES = ("count", "avg", "min", "max", "sum")
STRUCTURAL = (">>", ">", "~", "<<", "<", "!>>", "!>", "!<<", "!<", "!~", "&>>", "&>", "&<<", "&<", "&~")

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
  | (?P<number>\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h)?(?![A-Za-z_]))
  | (?P<op>!>>|!>|!<<|!<|!~|&>>|&>|&~|&<<|&<|>>|<<|&&|\|\||!=|>=|<=|=~|[{}(),|!=<>~+\-*/%^])
  | (?P<attr>(?:span|resource|event|link|instrumentation|parent)?\.(?:"(?:[^"\\]|\\.)*"|[^\s{}()=!<>~,|&"]+))
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*(?::[A-Za-z_][A-Za-z0-9_]*)?)
    """,
    re.VERBOSE,
)


@dataclass
class Tok:
    kind: str
    text: str
    pos: int


def tokenize(query: str) -> list[Tok]:
    toks: list[Tok] = []
    pos = 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if m is None:
            raise TraceQLError(
                f"TraceQL: cannot read {query[pos]!r} here", query=query, position=pos, part=query[pos]
            )
        kind = m.lastgroup or ""
        if kind != "ws":
            toks.append(Tok(kind, m.group(), pos))
        pos = m.end()
    toks.append(Tok("end", "", len(query)))
    return toks


# ---------------------------------------------------------------- AST
@dataclass
class Field:
    sql: str  # expression on alias u (span row) or t (trace row)
    type: str  # str, status, kind, duration, attr
    label: str
    pos: int


@dataclass
class Cond:
    op: str  # "and", "or", "not", "cmp", "true"
    args: list[Any] = field(default_factory=list)


@dataclass
class SpansetFilter:
    cond: Cond


@dataclass
class SpansetOp:
    op: str  # "&&", "||", or one of STRUCTURAL
    left: Any
    right: Any


@dataclass
class Stage:
    kind: str  # "agg", "by", "select", "filter"
    name: str = ""
    fields: list[Field] = field(default_factory=list)
    cmp: tuple[str, Any] | None = None
    cond: Cond | None = None


class Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.toks = tokenize(query)
        self.i = 0
        self.uses_trace = False

    # helpers
    def peek(self) -> Tok:
        return self.toks[self.i]

    def next(self) -> Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def error(self, message: str, tok: Tok | None = None) -> TraceQLError:
        tok = tok or self.peek()
        shown = tok.text or "the end of the query"
        return TraceQLError(
            f"TraceQL: {message} (at {shown!r})", query=self.query, position=tok.pos, part=tok.text
        )

    def unsupported(self, what: str, tok: Tok) -> TraceQLError:
        return TraceQLError(
            f"TraceQL: {what} {tok.text!r} is not supported by otlp_lab's TraceQL subset "
            "(see otlp_lab.store._traceql for what is)",
            query=self.query,
            position=tok.pos,
            part=tok.text,
        )

    def expect(self, text: str) -> Tok:
        tok = self.peek()
        if tok.text != text:
            raise self.error(f"expected {text!r}")
        return self.next()

    # grammar
    def parse(self) -> tuple[Any, list[Stage]]:
        expr = self.spanset_or()
        stages: list[Stage] = []
        while self.peek().text == "|":
            self.next()
            stages.append(self.stage())
        tok = self.peek()
        if tok.kind != "end":
            if tok.text in ("+", "-", "*", "/", "%", "^"):
                raise self.unsupported("arithmetic", tok)
            raise self.error("unexpected text after the query")
        return expr, stages

    def spanset_or(self) -> Any:
        # Tempo's grammar gives && and || one precedence, left-associative: a || b && c = (a || b) && c
        left = self.spanset_struct()
        while self.peek().text in ("&&", "||"):
            op = self.next().text
            left = SpansetOp(op, left, self.spanset_struct())
        return left

    def spanset_struct(self) -> Any:
        left = self.spanset_primary()
        while True:
            tok = self.peek()
            if tok.text in STRUCTURAL:
                self.next()
                left = SpansetOp(tok.text, left, self.spanset_primary())
            else:
                return left

    def spanset_primary(self) -> Any:
        tok = self.peek()
        if tok.text == "{":
            return SpansetFilter(self.braces())
        if tok.text == "(":
            self.next()
            inner = self.spanset_or()
            self.expect(")")
            return inner
        if tok.kind == "ident" and tok.text in (
            "rate",
            "count_over_time",
            "quantile_over_time",
            "histogram_over_time",
            "coalesce",
        ):
            raise self.unsupported("the function", tok)
        raise self.error("expected a spanset filter such as { status = error }")

    def braces(self) -> Cond:
        self.expect("{")
        if self.peek().text == "}":
            self.next()
            return Cond("true")
        cond = self.cond_or()
        if self.peek().text in ("+", "-", "*", "/", "%", "^"):
            raise self.unsupported("arithmetic", self.peek())
        self.expect("}")
        return cond

    def cond_or(self) -> Cond:
        # as between spansets: && and || share one precedence, left-associative (Tempo's expr.y)
        left = self.cond_not()
        while self.peek().text in ("&&", "||"):
            op = "and" if self.next().text == "&&" else "or"
            left = Cond(op, [left, self.cond_not()])
        return left

    def cond_not(self) -> Cond:
        if self.peek().text == "!":
            self.next()
            return Cond("not", [self.cond_not()])
        if self.peek().text == "(":
            self.next()
            inner = self.cond_or()
            self.expect(")")
            return inner
        f = self.field()
        tok = self.peek()
        if tok.text not in ("=", "!=", ">", ">=", "<", "<=", "=~", "!~"):
            if tok.text in ("+", "-", "*", "/", "%", "^"):
                raise self.unsupported("arithmetic", tok)
            raise self.error(f"expected a comparison after {f.label}")
        self.next()
        value = self.value(f)
        return Cond("cmp", [f, tok.text, value])

    def field(self) -> Field:
        tok = self.next()
        if tok.kind == "attr":
            scope, _, name = tok.text.partition(".")
            if scope in ("event", "link", "instrumentation", "parent"):
                raise self.unsupported("the attribute scope", tok)
            if name.startswith('"'):
                name = bytes(name[1:-1], "utf-8").decode("unicode_escape")
            lit = name.replace("'", "''")
            if scope == "resource" and name == "service.name":
                return Field("u.service_name", "str", tok.text, tok.pos)
            if scope == "span":
                sql = f"u.attributes['{lit}']"
            elif scope == "resource":
                sql = f"u.resource_attributes['{lit}']"
            else:
                sql = f"coalesce(u.attributes['{lit}'], u.resource_attributes['{lit}'])"
                if name == "service.name":
                    sql = f"coalesce(u.attributes['{lit}'], u.service_name::VARIANT)"
            return Field(sql, "attr", tok.text, tok.pos)
        if tok.kind == "ident":
            if tok.text in INTRINSICS:
                sql, typ = INTRINSICS[tok.text]
                if sql.startswith("t."):
                    self.uses_trace = True
                return Field(sql, typ, tok.text, tok.pos)
            raise self.unsupported("the intrinsic or keyword", tok)
        raise self.error(
            "expected an attribute (span.x, resource.x, .x) or an intrinsic (name, status, kind, duration)",
            tok,
        )

    def value(self, f: Field) -> Any:
        tok = self.next()
        if tok.kind == "op" and tok.text == "-" and self.peek().kind == "number":
            num = self.next()
            return (
                ("number", -_number(num.text))
                if not _is_duration(num.text)
                else ("duration", -_duration_ns(num.text))
            )
        if tok.kind == "string":
            text = tok.text[1:-1]
            if tok.text.startswith('"'):
                text = bytes(text, "utf-8").decode("unicode_escape")
            return ("string", text)
        if tok.kind == "number":
            if _is_duration(tok.text):
                return ("duration", _duration_ns(tok.text))
            return ("number", _number(tok.text))
        if tok.kind == "ident":
            if tok.text in ("true", "false"):
                return ("bool", tok.text == "true")
            if tok.text == "nil":
                return ("nil", None)
            if f.type == "status" and tok.text in STATUS:
                return ("enum", STATUS[tok.text])
            if f.type == "kind" and tok.text in KIND:
                return ("enum", KIND[tok.text])
            if tok.text in STATUS and f.type == "attr" or tok.text in KIND and f.type == "attr":
                raise self.error(f"{tok.text} is a status or kind value; compare it with status or kind", tok)
        raise self.error(f"expected a value to compare {f.label} with", tok)

    def stage(self) -> Stage:
        tok = self.peek()
        if tok.text == "{":
            return Stage("filter", cond=self.braces())
        if tok.kind != "ident":
            raise self.error("expected a pipeline stage such as count() > 2, by(...), select(...)")
        self.next()
        name = tok.text
        if name in AGGREGATES:
            self.expect("(")
            fields = [] if name == "count" else [self.field()]
            self.expect(")")
            cmp = None
            op = self.peek()
            if op.text in ("=", "!=", ">", ">=", "<", "<="):
                self.next()
                vtok = self.peek()
                v = self.value(fields[0] if fields else Field("", "number", "count()", tok.pos))
                if v[0] not in ("number", "duration"):
                    raise self.error("an aggregate compares with a number or a duration", vtok)
                cmp = (op.text, v[1])
            return Stage("agg", name=name, fields=fields, cmp=cmp)
        if name in ("by", "select"):
            self.expect("(")
            fields = [self.field()]
            while self.peek().text == ",":
                self.next()
                fields.append(self.field())
            self.expect(")")
            return Stage(name, fields=fields)
        raise self.unsupported("the pipeline function", tok)


def _is_duration(text: str) -> bool:
    return not text[-1].isdigit()


def _number(text: str) -> float | int:
    return float(text) if "." in text else int(text)


def _duration_ns(text: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)", text)
    assert m is not None
    return round(float(m.group(1)) * DURATION_NS[m.group(2)])


# ---------------------------------------------------------------- SQL
def _lit(v: Any) -> str:
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v)


def _cond_sql(c: Cond, q: str = "") -> str:
    if c.op == "true":
        return "true"
    if c.op == "and":
        return f"({_cond_sql(c.args[0], q)} AND {_cond_sql(c.args[1], q)})"
    if c.op == "or":
        return f"({_cond_sql(c.args[0], q)} OR {_cond_sql(c.args[1], q)})"
    if c.op == "not":
        return f"(NOT coalesce({_cond_sql(c.args[0], q)}, false))"
    f, op, (vkind, v) = c.args
    sql_op = {"=": "=", "!=": "<>"}.get(op, op)
    if vkind == "nil":
        if op not in ("=", "!="):
            raise TraceQLError("TraceQL: nil compares only with = or !=", query=q, position=f.pos, part="nil")
        return f"({f.sql} IS {'' if op == '=' else 'NOT '}NULL)"
    if op in ("=~", "!~"):
        if vkind != "string":
            raise TraceQLError(f"TraceQL: {op} needs a string pattern", query=q, position=f.pos, part=op)
        m = f"regexp_full_match({f.sql}::VARCHAR, {_lit(v)})"
        return m if op == "=~" else f"NOT {m}"
    if f.type in ("status", "kind"):
        if vkind != "enum":
            raise TraceQLError(
                f"TraceQL: {f.label} compares with one of {sorted(STATUS if f.type == 'status' else KIND)}",
                query=q,
                position=f.pos,
                part=f.label,
            )
        return f"{f.sql} {sql_op} {_lit(v)}"
    if f.type == "duration":
        if vkind not in ("duration", "number"):
            raise TraceQLError(
                f"TraceQL: {f.label} compares with a duration such as 500ms",
                query=q,
                position=f.pos,
                part=f.label,
            )
        return f"{f.sql} {sql_op} {int(v)}"
    if f.type == "str":
        return f"{f.sql} {sql_op} {_lit(v if vkind == 'string' else str(v).lower())}"
    # attribute: the literal decides the type
    if vkind == "string":
        return f"{f.sql}::VARCHAR {sql_op} {_lit(v)}"
    if vkind == "bool":
        return f"TRY_CAST({f.sql} AS BOOLEAN) {sql_op} {_lit(v)}"
    if vkind in ("number", "duration"):
        return f"TRY_CAST({f.sql} AS DOUBLE) {sql_op} {v}"
    raise TraceQLError(f"TraceQL: cannot compare {f.label} with {v!r}", query=q, position=f.pos, part=str(v))


class Compiler:
    def __init__(self, query: str, uses_trace: bool) -> None:
        self.query = query
        self.ctes: list[str] = []
        self.n = 0
        self.uses_trace = uses_trace

    def add(self, body: str) -> str:
        self.n += 1
        name = f"_q{self.n}"
        self.ctes.append(f"{name} AS ({body})")
        return name

    def source(self) -> str:
        if self.uses_trace:
            return "unique_spans u LEFT JOIN _trace t ON t.trace_id = u.trace_id"
        return "unique_spans u"

    def spanset(self, node: Any) -> str:
        if isinstance(node, SpansetFilter):
            return self.add(
                f"SELECT u.trace_id, u.span_id FROM {self.source()} WHERE {_cond_sql(node.cond, self.query)}"
            )
        a = self.spanset(node.left)
        b = self.spanset(node.right)
        if node.op == "||":
            return self.add(f"SELECT * FROM {a} UNION SELECT * FROM {b}")
        if node.op == "&&":
            return self.add(
                f"SELECT * FROM {a} WHERE trace_id IN (SELECT trace_id FROM {b}) "
                f"UNION SELECT * FROM {b} WHERE trace_id IN (SELECT trace_id FROM {a})"
            )
        return self.structural(node.op, a, b)

    def structural(self, op: str, a: str, b: str) -> str:
        """Tempo's structural operators: pairs (left span, right span) in a relation, then which side to keep.

        ``>`` child, ``<`` parent, ``>>`` descendant, ``<<`` ancestor, ``~`` sibling: the right-hand
        spans in that relation to a left-hand span. ``!`` in front: the right-hand spans in no such
        relation. ``&`` in front: the spans of both sides that are in one.
        """
        base = op.lstrip("!&")
        if base in (">", "<", "~"):
            join = {
                ">": "JOIN _edges e ON e.trace_id = b.trace_id AND e.span_id = b.span_id AND e.parent_span_id = a.span_id",
                "<": "JOIN _edges e ON e.trace_id = a.trace_id AND e.span_id = a.span_id AND e.parent_span_id = b.span_id",
                "~": "JOIN _edges ea ON ea.trace_id = a.trace_id AND ea.span_id = a.span_id "
                "JOIN _edges e ON e.trace_id = b.trace_id AND e.span_id = b.span_id "
                "AND e.parent_span_id = ea.parent_span_id AND b.span_id <> a.span_id",
            }[base]
            pairs = self.add(
                f"SELECT DISTINCT a.trace_id, a.span_id AS a_span, b.span_id AS b_span FROM {a} a "
                f"JOIN {b} b ON b.trace_id = a.trace_id {join}"
            )
        else:
            # >> and <<: walk from the left spans down (their descendants) or up (their ancestors);
            # UNION (not UNION ALL) stops on parent cycles.
            w = f"_w{self.n + 1}"
            self.n += 1
            if base == ">>":
                step0 = f"SELECT a.trace_id, a.span_id AS a_span, e.span_id FROM {a} a JOIN _edges e ON e.trace_id = a.trace_id AND e.parent_span_id = a.span_id"
                step = f"SELECT w.trace_id, w.a_span, e.span_id FROM {w} w JOIN _edges e ON e.trace_id = w.trace_id AND e.parent_span_id = w.span_id"
            else:
                step0 = f"SELECT a.trace_id, a.span_id AS a_span, e.parent_span_id AS span_id FROM {a} a JOIN _edges e ON e.trace_id = a.trace_id AND e.span_id = a.span_id WHERE e.parent_span_id IS NOT NULL"
                step = f"SELECT w.trace_id, w.a_span, e.parent_span_id FROM {w} w JOIN _edges e ON e.trace_id = w.trace_id AND e.span_id = w.span_id WHERE e.parent_span_id IS NOT NULL"
            self.ctes.append(f"{w}(trace_id, a_span, span_id) AS ({step0} UNION {step})")
            pairs = self.add(
                f"SELECT DISTINCT w.trace_id, w.a_span, w.span_id AS b_span FROM {w} w "
                f"JOIN {b} b ON b.trace_id = w.trace_id AND b.span_id = w.span_id"
            )
        right = f"SELECT DISTINCT trace_id, b_span AS span_id FROM {pairs}"
        if op.startswith("!"):
            return self.add(f"SELECT * FROM {b} EXCEPT {right}")
        if op.startswith("&"):
            return self.add(f"{right} UNION SELECT DISTINCT trace_id, a_span FROM {pairs}")
        return self.add(right)


def compile_traceql(query: str) -> str:
    """TraceQL -> a DuckDB query returning the matching spans (see the module doc)."""
    parser = Parser(query)
    expr, stages = parser.parse()
    comp = Compiler(query, parser.uses_trace)
    cur = comp.spanset(expr)
    group: list[str] = []
    extra: list[str] = []
    join_u = "JOIN unique_spans u ON u.trace_id = r.trace_id AND u.span_id = r.span_id"
    if parser.uses_trace:
        join_u += " LEFT JOIN _trace t ON t.trace_id = r.trace_id"
    for st in stages:
        if st.kind == "filter":
            assert st.cond is not None
            cur = comp.add(f"SELECT r.* FROM {cur} r {join_u} WHERE {_cond_sql(st.cond, query)}")
        elif st.kind in ("by", "select"):
            cols = []
            for f in st.fields:
                label = f"{st.kind}({f.label})" if st.kind == "by" else f.label
                cols.append(f'{f.sql}::VARCHAR AS "{label}"')
                (group if st.kind == "by" else extra).append(f'"{label}"')
            cur = comp.add(f"SELECT r.*, {', '.join(cols)} FROM {cur} r {join_u}")
        else:
            label = f"{st.name}({st.fields[0].label if st.fields else ''})"
            if st.name == "count":
                agg = "count(*)"
            else:
                f = st.fields[0]
                val = f.sql if f.type == "duration" else f"TRY_CAST({f.sql} AS DOUBLE)"
                if f.type in ("str", "status", "kind"):
                    raise TraceQLError(
                        f"TraceQL: {st.name}() needs a number or a duration, not {f.label}",
                        query=query,
                        position=f.pos,
                        part=f.label,
                    )
                agg = f"{st.name}({val})"
            part = ", ".join(["r.trace_id", *(f"r.{g}" for g in group)])
            body = f'SELECT r.*, {agg} OVER (PARTITION BY {part}) AS "{label}" FROM {cur} r {join_u}'
            if st.cmp is not None:
                op, v = st.cmp
                body = f'SELECT * FROM ({body}) WHERE "{label}" {"<>" if op == "!=" else op} {v}'
            extra.append(f'"{label}"')
            cur = comp.add(body)
    pre = [
        "_edges AS (SELECT trace_id, span_id, parent_span_id FROM unique_spans)",
    ]
    if parser.uses_trace:
        pre.append(
            "_trace AS (SELECT trace_id, root_service AS _root_service, root_name AS _root_name, "
            "duration_ns AS _trace_duration_ns FROM traces)"
        )
    outs = ", ".join(dict.fromkeys([*group, *extra]))
    return (
        "WITH RECURSIVE " + ",\n".join(pre + comp.ctes) + "\n"
        "SELECT u.trace_id, u.span_id, u.parent_span_id, u.service_name, u.name, u.kind, u.start_time, "
        "u.duration_ns, u.status_code"
        + (f", {outs}" if outs else "")
        + f"\nFROM {cur} r JOIN unique_spans u "
        "USING (trace_id, span_id) ORDER BY u.trace_id, u.start_time, u.span_id"
    )
