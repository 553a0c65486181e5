"""A recursive-descent parser for the SQL vocabulary of the fake server.

Anything outside the vocabulary is a syntax error (42601) naming the token
where parsing stopped, never an exception of another kind: the proxy under
test must see what a server says about SQL it does not accept.
"""

from __future__ import annotations

import functools

from sim.fakepg import nodes as n
from sim.fakepg.errors import SYNTAX_ERROR, SqlError, syntax_error
from sim.fakepg.lexer import EOF, IDENT, NUMBER, QIDENT, STRING, Piece, split
from sim.fakepg.sql_expr import RESERVED, ExprParser


class Parser(ExprParser):
    """Statements; see sql_expr.py for tokens and expressions."""

    # -- statements --------------------------------------------------------------------

    def statement(self) -> n.Statement:
        tok = self.peek()
        if tok.kind != IDENT:
            raise self.error()
        handler = getattr(self, f"_st_{tok.value}", None)
        if handler is None:
            raise self.error()
        self.pos += 1
        stmt: n.Statement = handler()
        self.end()
        return stmt

    def _txn_modes(self) -> bool | None:
        read_only: bool | None = None
        while True:
            if self.accept("isolation"):
                self.expect("level")
                if self.accept("read"):
                    if not self.accept("committed", "uncommitted"):
                        raise self.error()
                elif self.accept("repeatable"):
                    self.expect("read")
                elif not self.accept("serializable"):
                    raise self.error()
            elif self.accept("read"):
                if self.accept("only"):
                    read_only = True
                elif self.accept("write"):
                    read_only = False
                else:
                    raise self.error()
            elif self.accept("not"):
                self.expect("deferrable")
            elif not self.accept("deferrable"):
                return read_only
            self.accept_op(",")

    def _st_begin(self) -> n.Statement:
        self.accept("work", "transaction")
        return n.Begin("BEGIN", self._txn_modes())

    def _st_start(self) -> n.Statement:
        self.expect("transaction")
        return n.Begin("START TRANSACTION", self._txn_modes())

    def _chain(self) -> None:
        if self.accept("and"):
            self.accept("no")
            self.expect("chain")

    def _st_commit(self) -> n.Statement:
        if self.accept("prepared"):
            return n.CommitPrepared(self.string())
        self.accept("work", "transaction")
        self._chain()
        return n.Commit()

    def _st_end(self) -> n.Statement:
        self.accept("work", "transaction")
        return n.Commit()

    def _st_rollback(self) -> n.Statement:
        if self.accept("prepared"):
            return n.RollbackPrepared(self.string())
        self.accept("work", "transaction")
        if self.accept("to"):
            self.accept("savepoint")
            return n.RollbackTo(self.name())
        self._chain()
        return n.Rollback()

    def _st_abort(self) -> n.Statement:
        self.accept("work", "transaction")
        return n.Rollback()

    def _st_savepoint(self) -> n.Statement:
        return n.Savepoint(self.name())

    def _st_release(self) -> n.Statement:
        self.accept("savepoint")
        return n.Release(self.name())

    def _st_prepare(self) -> n.Statement:
        if self.accept("transaction"):
            return n.PrepareTransaction(self.string())
        name = self.name()
        types: list[int] = []
        if self.accept_op("("):
            types.append(self.type_name()[0])
            while self.accept_op(","):
                types.append(self.type_name()[0])
            self.expect_op(")")
        self.expect("as")
        start = self.peek().pos
        body_piece = Piece(self.tokens[self.pos:], self.text[start:])
        body = Parser(body_piece).statement()
        self.pos = len(self.tokens) - 1
        if isinstance(body, n.PrepareStatement | n.ExecuteStatement):
            raise syntax_error(body_piece.tokens[0].raw, start + 1)
        return n.PrepareStatement(name, tuple(types), body, self.text[start:].strip())

    def _st_execute(self) -> n.Statement:
        name = self.name()
        args: list[n.Expr] = []
        if self.accept_op("("):
            args.append(self.expr())
            while self.accept_op(","):
                args.append(self.expr())
            self.expect_op(")")
        return n.ExecuteStatement(name, tuple(args))

    def _setting_value(self) -> str | None:
        if self.accept("default"):
            return None
        values: list[str] = []
        while True:
            tok = self.peek()
            sign = ""
            if tok.is_op("-", "+"):
                sign = "-" if tok.value == "-" else ""
                self.pos += 1
                tok = self.peek()
                if tok.kind != NUMBER:
                    raise self.error()
            if tok.kind in (IDENT, QIDENT, STRING, NUMBER):
                self.pos += 1
                values.append(sign + tok.value)
            else:
                raise self.error()
            if not self.accept_op(","):
                return ", ".join(values)

    def _st_set(self) -> n.Statement:
        local = False
        if self.accept("local"):
            local = True
        elif self.accept("session"):
            if self.accept("characteristics"):
                self.expect("as", "transaction")
                return n.SetTransaction(self._txn_modes(), session=True)
            if self.peek().is_word("authorization"):
                raise self.error()
        if self.accept("transaction"):
            return n.SetTransaction(self._txn_modes())
        if self.accept("time"):
            self.expect("zone")
            if self.accept("local"):
                return n.SetVar("timezone", None, local)
            return n.SetVar("timezone", self._setting_value(), local)
        name = self.name()
        while self.accept_op("."):
            name += "." + self.name()
        if not (self.accept("to") or self.accept_op("=")):
            raise self.error()
        return n.SetVar(name, self._setting_value(), local)

    def _st_reset(self) -> n.Statement:
        if self.accept("all"):
            return n.Reset(None)
        if self.accept("time"):
            self.expect("zone")
            return n.Reset("timezone")
        name = self.name()
        while self.accept_op("."):
            name += "." + self.name()
        return n.Reset(name)

    def _st_discard(self) -> n.Statement:
        for word in ("all", "plans", "sequences", "temp", "temporary"):
            if self.accept(word):
                return n.Discard("temp" if word == "temporary" else word)
        raise self.error()

    def _st_deallocate(self) -> n.Statement:
        self.accept("prepare")
        if self.accept("all"):
            return n.Deallocate(None)
        return n.Deallocate(self.name())

    def _st_show(self) -> n.Statement:
        if self.accept("transaction"):
            self.expect("isolation", "level")
            return n.Show("transaction_isolation")
        if self.accept("time"):
            self.expect("zone")
            return n.Show("timezone")
        name = self.name()
        while self.accept_op("."):
            name += "." + self.name()
        return n.Show(name)

    def _st_create(self) -> n.Statement:
        self.expect("table")
        if_not_exists = False
        if self.accept("if"):
            self.expect("not", "exists")
            if_not_exists = True
        name = self.qualified_name()
        self.expect_op("(")
        depth = 1
        while depth:
            tok = self.next()
            if tok.kind == EOF:
                raise self.error()
            if tok.is_op("("):
                depth += 1
            elif tok.is_op(")"):
                depth -= 1
        return n.CreateTable(name, if_not_exists)

    def _returning(self) -> tuple[n.SelectItem, ...]:
        if self.accept("returning"):
            return self.select_items()
        return ()

    def _st_insert(self) -> n.Statement:
        self.expect("into")
        table = self.qualified_name()
        columns: tuple[str, ...] | None = None
        if self.accept_op("("):
            cols = [self.name()]
            while self.accept_op(","):
                cols.append(self.name())
            self.expect_op(")")
            columns = tuple(cols)
        self.expect("values")
        rows = [self._row()]
        while self.accept_op(","):
            rows.append(self._row())
        conflict: tuple[tuple[str, n.Expr], ...] | None = None
        if self.accept("on"):
            self.expect("conflict")
            if self.accept_op("("):
                self.name()
                while self.accept_op(","):
                    self.name()
                self.expect_op(")")
            self.expect("do")
            if self.accept("nothing"):
                conflict = ()
            else:
                self.expect("update", "set")
                conflict = self._assignments()
        return n.Insert(table, columns, tuple(rows), conflict, self._returning())

    def _row(self) -> tuple[n.Expr, ...]:
        self.expect_op("(")
        values = [self.expr()]
        while self.accept_op(","):
            values.append(self.expr())
        self.expect_op(")")
        return tuple(values)

    def _assignments(self) -> tuple[tuple[str, n.Expr], ...]:
        out: list[tuple[str, n.Expr]] = []
        while True:
            col = self.name()
            self.expect_op("=")
            out.append((col, self.expr()))
            if not self.accept_op(","):
                return tuple(out)

    def _alias(self) -> None:
        if self.accept("as"):
            self.name()
        elif self.peek().kind == IDENT and self.peek().value not in RESERVED:
            self.pos += 1

    def _st_update(self) -> n.Statement:
        table = self.qualified_name()
        self._alias()
        self.expect("set")
        assignments = self._assignments()
        where = self.expr() if self.accept("where") else None
        return n.Update(table, assignments, where, self._returning())

    def _st_delete(self) -> n.Statement:
        self.expect("from")
        table = self.qualified_name()
        self._alias()
        where = self.expr() if self.accept("where") else None
        return n.Delete(table, where, self._returning())

    def _st_select(self) -> n.Statement:
        items = self.select_items()
        source = where = limit = offset = None
        order: list[tuple[n.Expr, bool]] = []
        for_update = False
        if self.accept("from"):
            source = self.qualified_name()
            self._alias()
        if self.accept("where"):
            where = self.expr()
        if self.accept("order"):
            self.expect("by")
            while True:
                expr = self.expr()
                desc = False
                if self.accept("desc"):
                    desc = True
                else:
                    self.accept("asc")
                if self.accept("nulls") and not self.accept("last"):
                    self.expect("first")
                order.append((expr, desc))
                if not self.accept_op(","):
                    break
        if self.accept("limit"):
            limit = None if self.accept("all") else self.expr()
        if self.accept("offset"):
            offset = self.expr()
            self.accept("rows", "row")
        if self.accept("for"):
            if self.accept("no"):
                self.expect("key", "update")
            elif not self.accept("update", "share"):
                self.expect("key", "share")
            for_update = True
            if not self.accept("nowait") and self.accept("skip"):
                self.expect("locked")
        return n.Select(items, source, where, tuple(order), limit, offset, for_update)

    def select_items(self) -> tuple[n.SelectItem, ...]:
        items: list[n.SelectItem] = []
        while True:
            if self.accept_op("*"):
                items.append(n.SelectItem(n.Star()))
            else:
                expr = self.expr()
                alias = None
                if self.accept("as") or self.peek().kind == QIDENT or (self.peek().kind == IDENT
                                                    and self.peek().value not in RESERVED):
                    alias = self.name()
                items.append(n.SelectItem(expr, alias))
            if not self.accept_op(","):
                return tuple(items)


def parse_script(text: str) -> tuple[tuple[n.Statement, str], ...]:
    """Every statement of a simple Query, with its own text; a syntax error anywhere fails it all."""
    try:
        return _parse_script(text)
    except RecursionError:
        raise SqlError("54001", "stack depth limit exceeded") from None


@functools.lru_cache(maxsize=4096)
def _parse_script(text: str) -> tuple[tuple[n.Statement, str], ...]:
    return tuple((Parser(piece).statement(), piece.text) for piece in split(text))


def parse_one(text: str) -> tuple[n.Statement, str] | None:
    """The single statement of a Parse message (None for an empty string)."""
    stmts = parse_script(text)
    if not stmts:
        return None
    if len(stmts) > 1:
        raise SqlError(SYNTAX_ERROR, "cannot insert multiple commands into a prepared statement")
    return stmts[0]


__all__ = ["Parser", "parse_one", "parse_script"]
