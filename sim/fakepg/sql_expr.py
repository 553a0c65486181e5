"""Token handling and the expression grammar of the fake server's SQL (sql.py adds statements).

Precedence, lowest first: OR, AND, NOT, comparisons (= <> < > <= >= IS IN
BETWEEN), + - ||, * / %, unary minus, :: casts, then literals, parameters,
column references, function calls, CASE, CAST and EXTRACT.
"""

from __future__ import annotations

from decimal import Decimal

from sim.fakepg import nodes as n
from sim.fakepg.errors import SqlError, syntax_error
from sim.fakepg.lexer import EOF, IDENT, NUMBER, OP, PARAM, QIDENT, STRING, Piece, Token
from sim.fakepg.values import BOOL, INT4, INT4_MAX, INT4_MIN, INT8, NUMERIC, TEXT, TYPE_NAMES

# Words that end an expression or cannot be a bare column alias.
RESERVED = frozenset({
    "from", "where", "order", "limit", "offset", "for", "and", "or", "not", "is", "in", "as", "then",
    "when", "else", "end", "returning", "on", "values", "set", "group", "having", "union", "between",
    "asc", "desc", "nulls", "case", "select", "into",
})
_COMPARE = frozenset({"=", "<>", "!=", "<", ">", "<=", ">="})
# Functions written without parentheses.
_NILADIC = {"current_timestamp": "now", "localtimestamp": "now", "current_user": "current_user",
            "session_user": "current_user", "user": "current_user", "current_database": "current_database"}



class ExprParser:
    """A cursor over one statement's tokens, and expressions."""

    def __init__(self, piece: Piece) -> None:
        self.tokens = piece.tokens
        self.text = piece.text
        self.pos = 0

    # -- token helpers ---------------------------------------------------------------

    def peek(self, ahead: int = 0) -> Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def next(self) -> Token:
        tok = self.peek()
        if tok.kind != EOF:
            self.pos += 1
        return tok

    def error(self) -> SqlError:
        tok = self.peek()
        return syntax_error(tok.raw if tok.kind != EOF else None, tok.pos + 1)

    def accept(self, *words: str) -> bool:
        if self.peek().is_word(*words):
            self.pos += 1
            return True
        return False

    def expect(self, *words: str) -> None:
        for word in words:
            if not self.accept(word):
                raise self.error()

    def accept_op(self, op: str) -> bool:
        if self.peek().is_op(op):
            self.pos += 1
            return True
        return False

    def expect_op(self, op: str) -> None:
        if not self.accept_op(op):
            raise self.error()

    def name(self) -> str:
        tok = self.peek()
        if tok.kind in (IDENT, QIDENT):
            self.pos += 1
            return tok.value
        raise self.error()

    def qualified_name(self) -> str:
        """schema.name: the schema is dropped (pg_catalog and public are all there is)."""
        name = self.name()
        while self.accept_op("."):
            name = self.name()
        return name

    def string(self) -> str:
        tok = self.peek()
        if tok.kind != STRING:
            raise self.error()
        self.pos += 1
        return tok.value

    def end(self) -> None:
        if self.peek().kind != EOF:
            raise self.error()

    # -- expressions -------------------------------------------------------------------

    def expr(self) -> n.Expr:
        left = self._and()
        while self.accept("or"):
            left = n.BinOp("or", left, self._and())
        return left

    def _and(self) -> n.Expr:
        left = self._not()
        while self.accept("and"):
            left = n.BinOp("and", left, self._not())
        return left

    def _not(self) -> n.Expr:
        if self.accept("not"):
            return n.UnaryOp("not", self._not())
        return self._compare()

    def _compare(self) -> n.Expr:
        left = self._additive()
        tok = self.peek()
        if tok.kind == OP and tok.value in _COMPARE:
            self.pos += 1
            op = "<>" if tok.value == "!=" else tok.value
            return n.BinOp(op, left, self._additive())
        if self.accept("is"):
            negated = self.accept("not")
            if self.accept("null"):
                return n.IsNull(left, negated)
            for word, value in (("true", True), ("false", False)):
                if self.accept(word):
                    test = n.BinOp("=", left, n.Const(value, BOOL))
                    return n.UnaryOp("not", test) if negated else test
            raise self.error()
        negated = False
        if tok.is_word("not") and self.peek(1).is_word("in", "between"):
            self.pos += 1
            negated = True
        if self.accept("in"):
            self.expect_op("(")
            items = [self.expr()]
            while self.accept_op(","):
                items.append(self.expr())
            self.expect_op(")")
            return n.InList(left, tuple(items), negated)
        if self.accept("between"):
            low = self._additive()
            self.expect("and")
            high = self._additive()
            test: n.Expr = n.BinOp("and", n.BinOp(">=", left, low), n.BinOp("<=", left, high))
            return n.UnaryOp("not", test) if negated else test
        return left

    def _additive(self) -> n.Expr:
        left = self._multiplicative()
        while self.peek().is_op("+", "-", "||"):
            op = self.next().value
            left = n.BinOp(op, left, self._multiplicative())
        return left

    def _multiplicative(self) -> n.Expr:
        left = self._unary()
        while self.peek().is_op("*", "/", "%"):
            op = self.next().value
            left = n.BinOp(op, left, self._unary())
        return left

    def _unary(self) -> n.Expr:
        if self.accept_op("-"):
            operand = self._unary()
            if isinstance(operand, n.Const) and isinstance(operand.value, int | Decimal) \
                    and not isinstance(operand.value, bool):
                return _number(-operand.value)
            return n.UnaryOp("-", operand)
        if self.accept_op("+"):
            return self._unary()
        expr = self._primary()
        while self.accept_op("::"):
            oid, type_name = self.type_name()
            expr = n.Cast(expr, oid, type_name)
        return expr

    def type_name(self) -> tuple[int, str]:
        tok = self.peek()
        word = self.name()
        if word == "double":
            self.expect("precision")
            word = "float8"
        elif word == "character":
            self.accept("varying")
            word = "varchar"
        elif word == "timestamp":
            if self.accept("with") or self.accept("without"):
                self.expect("time", "zone")
            word = "timestamptz"
        while self.accept_op("."):
            word = self.name()
        if self.accept_op("("):
            while not self.accept_op(")"):
                if self.next().kind == EOF:
                    raise self.error()
        oid = TYPE_NAMES.get(word)
        if oid is None:
            raise SqlError("42704", f'type "{tok.raw}" does not exist', position=tok.pos + 1)
        return oid, word

    def _primary(self) -> n.Expr:
        tok = self.peek()
        if tok.kind == NUMBER:
            self.pos += 1
            if any(c in tok.value for c in ".eE"):
                return n.Const(Decimal(tok.value), NUMERIC)
            return _number(int(tok.value))
        if tok.kind == STRING:
            self.pos += 1
            return n.Const(tok.value, TEXT)
        if tok.kind == PARAM:
            self.pos += 1
            index = int(tok.value)
            if index < 1 or index > 65535:
                raise SqlError("42P02", f"there is no parameter ${tok.value}", position=tok.pos + 1)
            return n.Param(index)
        if tok.is_op("("):
            self.pos += 1
            inner = self.expr()
            self.expect_op(")")
            return inner
        if tok.kind == QIDENT:
            return self._name_expr()
        if tok.kind != IDENT or tok.value in RESERVED - {"case"}:
            raise self.error()
        word = tok.value
        if word in ("true", "false"):
            self.pos += 1
            return n.Const(word == "true", BOOL)
        if word == "null":
            self.pos += 1
            return n.Const(None, TEXT)
        if word == "case":
            self.pos += 1
            return self._case()
        if word == "cast" and self.peek(1).is_op("("):
            self.pos += 2
            operand = self.expr()
            self.expect("as")
            oid, type_name = self.type_name()
            self.expect_op(")")
            return n.Cast(operand, oid, type_name)
        if word == "extract" and self.peek(1).is_op("("):
            self.pos += 2
            field = self.name() if self.peek().kind != STRING else self.string().lower()
            self.expect("from")
            operand = self.expr()
            self.expect_op(")")
            return n.Extract(field, operand)
        if word in TYPE_NAMES and self.peek(1).kind == STRING:
            self.pos += 1
            literal = self.string()
            return n.Cast(n.Const(literal, TEXT), TYPE_NAMES[word], word)
        if word in _NILADIC and not self.peek(1).is_op("("):
            self.pos += 1
            return n.Func(_NILADIC[word], ())
        return self._name_expr()

    def _name_expr(self) -> n.Expr:
        first = self.name()
        second: str | None = None
        if self.accept_op("."):
            second = self.name()
        if self.accept_op("("):
            fname = second if second is not None else first
            if self.accept_op("*"):
                self.expect_op(")")
                return n.Func(fname, (), star=True)
            args: list[n.Expr] = []
            if not self.accept_op(")"):
                args.append(self.expr())
                while self.accept_op(","):
                    args.append(self.expr())
                self.expect_op(")")
            return n.Func(fname, tuple(args))
        if second is not None:
            return n.Column(second, first)
        return n.Column(first)

    def _case(self) -> n.Expr:
        operand = None if self.peek().is_word("when") else self.expr()
        whens: list[tuple[n.Expr, n.Expr]] = []
        while self.accept("when"):
            cond = self.expr()
            self.expect("then")
            whens.append((cond, self.expr()))
        if not whens:
            raise self.error()
        default = self.expr() if self.accept("else") else None
        self.expect("end")
        return n.Case(operand, tuple(whens), default)


def _number(value: int | Decimal) -> n.Const:
    if isinstance(value, Decimal):
        return n.Const(value, NUMERIC)
    if INT4_MIN <= value <= INT4_MAX:
        return n.Const(value, INT4)
    if -(1 << 63) <= value < (1 << 63):
        return n.Const(value, INT8)
    return n.Const(Decimal(value), NUMERIC)
