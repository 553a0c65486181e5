// PgJDBC against the proxy and against PostgreSQL itself: each scenario prints a transcript of
// what the driver saw (results, SQLSTATEs, update counts), with nothing that differs from one
// server connection to another, so tests/integration/test_jdbc.py can require the proxy's
// transcript to equal PostgreSQL's. A scenario that cannot even run exits non-zero.
//
// usage: java -cp postgresql.jar:DIR JdbcScenarios URL USER PASSWORD TABLE SCENARIO

import java.io.ByteArrayOutputStream;
import java.io.StringReader;
import java.nio.charset.StandardCharsets;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

import org.postgresql.PGConnection;
import org.postgresql.PGNotification;
import org.postgresql.copy.CopyManager;
import org.postgresql.largeobject.LargeObject;
import org.postgresql.largeobject.LargeObjectManager;

public final class JdbcScenarios {
    private final String url;
    private final String user;
    private final String password;
    private final String table;
    private final List<String> out = Collections.synchronizedList(new ArrayList<>());

    private JdbcScenarios(String url, String user, String password, String table) {
        this.url = url;
        this.user = user;
        this.password = password;
        this.table = table;
    }

    public static void main(String[] args) throws Exception {
        JdbcScenarios s = new JdbcScenarios(args[0], args[1], args[2], args[3]);
        switch (args[4]) {
            case "prepared" -> s.prepared();
            case "threads" -> s.threads();
            case "batch" -> s.batch(false);
            case "batch_rewritten" -> s.batch(true);
            case "transactions" -> s.transactions();
            case "fetch_size" -> s.fetchSize();
            case "types" -> s.types();
            case "copy" -> s.copy();
            case "timeout" -> s.timeout();
            case "errors" -> s.errors();
            case "metadata" -> s.metadata();
            case "settings" -> s.settings();
            case "simple_mode" -> s.simpleMode();
            case "deallocate" -> s.deallocate();
            case "statement_cache" -> s.statementCache();
            case "plan_change" -> s.planChange();
            case "notify" -> s.notifications();
            case "large_object" -> s.largeObject();
            default -> throw new IllegalArgumentException("unknown scenario " + args[4]);
        }
        for (String line : s.out) {
            System.out.println(line);
        }
    }

    private Connection connect(String... extra) throws SQLException {
        Properties p = new Properties();
        p.setProperty("user", user);
        p.setProperty("password", password);
        p.setProperty("connectTimeout", "10");
        p.setProperty("socketTimeout", "60");
        p.setProperty("ApplicationName", "jdbc-scenarios");
        for (int i = 0; i + 1 < extra.length; i += 2) {
            p.setProperty(extra[i], extra[i + 1]);
        }
        return DriverManager.getConnection(url, p);
    }

    private void say(String line) {
        out.add(line);
    }

    private static String rows(ResultSet rs) throws SQLException {
        StringBuilder b = new StringBuilder();
        int n = rs.getMetaData().getColumnCount();
        while (rs.next()) {
            b.append(b.length() == 0 ? "" : " | ");
            for (int i = 1; i <= n; i++) {
                b.append(i == 1 ? "" : ",").append(rs.getString(i));
            }
        }
        return b.toString();
    }

    private void fails(String what, Statement st, String sql) {
        try {
            st.execute(sql);
            say(what + ": no error");
        } catch (SQLException e) {
            say(what + ": " + e.getSQLState());
        }
    }

    /** Past prepareThreshold (5) the driver names its statements (S_1, ...) and keeps them. */
    void prepared() throws Exception {
        try (Connection c = connect("prepareThreshold", "3");
             PreparedStatement a = c.prepareStatement("SELECT ?::int * 2, 'a'");
             PreparedStatement b = c.prepareStatement("SELECT ?::text || '-b'")) {
            for (int i = 0; i < 12; i++) {
                a.setInt(1, i);
                try (ResultSet rs = a.executeQuery()) {
                    say("a " + rows(rs));
                }
                b.setString(1, "x" + i);
                try (ResultSet rs = b.executeQuery()) {
                    say("b " + rows(rs));
                }
            }
            // A statement closed and the same text prepared again: a new name for the same text.
            a.close();
            try (PreparedStatement again = c.prepareStatement("SELECT ?::int * 2, 'a'")) {
                for (int i = 0; i < 6; i++) {
                    again.setInt(1, 100 + i);
                    try (ResultSet rs = again.executeQuery()) {
                        say("again " + rows(rs));
                    }
                }
            }
        }
    }

    /** More connections than the pool has servers, each with its own named statements. */
    void threads() throws Exception {
        ExecutorService pool = Executors.newFixedThreadPool(6);
        List<Future<String>> results = new ArrayList<>();
        for (int t = 0; t < 6; t++) {
            final int id = t;
            results.add(pool.submit(() -> {
                long sum = 0;
                try (Connection c = connect("prepareThreshold", "2");
                     PreparedStatement p = c.prepareStatement("SELECT ?::bigint + " + (id % 3));
                     PreparedStatement q = c.prepareStatement("SELECT count(*) FROM generate_series(1, ?)")) {
                    for (int i = 0; i < 150; i++) {
                        p.setLong(1, i);
                        try (ResultSet rs = p.executeQuery()) {
                            rs.next();
                            sum += rs.getLong(1);
                        }
                        q.setInt(1, i % 7);
                        try (ResultSet rs = q.executeQuery()) {
                            rs.next();
                            sum += rs.getLong(1);
                        }
                    }
                }
                return "thread " + id + " " + sum;
            }));
        }
        for (Future<String> f : results) {
            say(f.get());
        }
        pool.shutdown();
    }

    /** executeBatch: many Bind/Execute pairs and one Sync; a duplicate key fails the batch. */
    void batch(boolean rewrite) throws Exception {
        try (Connection c = connect("reWriteBatchedInserts", String.valueOf(rewrite))) {
            try (Statement st = c.createStatement()) {
                st.execute("CREATE TABLE " + table + " (id int PRIMARY KEY, v text)");
            }
            c.setAutoCommit(false);
            try (PreparedStatement ins = c.prepareStatement("INSERT INTO " + table + " VALUES (?, ?)")) {
                for (int i = 0; i < 500; i++) {
                    ins.setInt(1, i);
                    ins.setString(2, "v" + i);
                    ins.addBatch();
                }
                int[] counts = ins.executeBatch();
                int total = 0;
                for (int n : counts) {
                    total += n == Statement.SUCCESS_NO_INFO ? 1 : n;
                }
                say("batch of " + counts.length + " counts " + total);
                c.commit();
                for (int i = 500; i < 520; i++) {
                    ins.setInt(1, i == 510 ? 3 : i);
                    ins.setString(2, "w" + i);
                    ins.addBatch();
                }
                try {
                    ins.executeBatch();
                    say("duplicate: no error");
                } catch (BatchUpdateException e) {
                    say("duplicate: " + e.getSQLState());
                }
                c.rollback();
            }
            c.setAutoCommit(true);
            try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery(
                    "SELECT count(*), sum(id), min(v), max(v) FROM " + table)) {
                say("table " + rows(rs));
            }
        }
    }

    /** Commit, rollback, isolation levels and savepoints across a pool shared with others. */
    void transactions() throws Exception {
        try (Connection c = connect("autosave", "always");
             Connection other = connect()) {
            try (Statement st = c.createStatement()) {
                st.execute("CREATE TABLE " + table + " (id int PRIMARY KEY)");
            }
            c.setAutoCommit(false);
            c.setTransactionIsolation(Connection.TRANSACTION_SERIALIZABLE);
            try (Statement st = c.createStatement()) {
                st.executeUpdate("INSERT INTO " + table + " VALUES (1)");
                try (ResultSet rs = st.executeQuery("SHOW transaction_isolation")) {
                    say("isolation " + rows(rs));
                }
                // autosave=always: the failed statement rolls back to the driver's savepoint only.
                fails("duplicate in txn", st, "INSERT INTO " + table + " VALUES (1)");
                st.executeUpdate("INSERT INTO " + table + " VALUES (2)");
                try (Statement o = other.createStatement(); ResultSet rs = o.executeQuery(
                        "SELECT count(*) FROM " + table)) {
                    say("other sees before commit " + rows(rs));
                }
                c.commit();
                st.executeUpdate("INSERT INTO " + table + " VALUES (3)");
                c.rollback();
            }
            c.setTransactionIsolation(Connection.TRANSACTION_READ_COMMITTED);
            c.setAutoCommit(true);
            try (Statement o = other.createStatement(); ResultSet rs = o.executeQuery(
                    "SELECT string_agg(id::text, ',' ORDER BY id) FROM " + table)) {
                say("other sees after " + rows(rs));
            }
            try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SHOW transaction_isolation")) {
                say("isolation after " + rows(rs));
            }
        }
    }

    /** A fetch size inside a transaction: Execute with a row limit, PortalSuspended, Execute again. */
    void fetchSize() throws Exception {
        try (Connection c = connect()) {
            c.setAutoCommit(false);
            try (PreparedStatement p = c.prepareStatement("SELECT i, repeat('x', i % 50) FROM generate_series(1, ?) i")) {
                p.setFetchSize(37);
                for (int round = 0; round < 3; round++) {
                    p.setInt(1, 1000 + round);
                    long sum = 0;
                    long len = 0;
                    int n = 0;
                    try (ResultSet rs = p.executeQuery()) {
                        while (rs.next()) {
                            sum += rs.getInt(1);
                            len += rs.getString(2).length();
                            n++;
                        }
                    }
                    say("round " + round + " rows " + n + " sum " + sum + " len " + len);
                }
            }
            c.commit();
        }
    }

    /** Binary transfer of the usual types (prepareThreshold=-1: named and binary from the start). */
    void types() throws Exception {
        try (Connection c = connect("prepareThreshold", "-1");
             PreparedStatement p = c.prepareStatement(
                     "SELECT ?::int, ?::bigint, ?::numeric * 2, ?::float8 / 3, ?::bool, ?::date + 1,"
                     + " ?::timestamptz AT TIME ZONE 'UTC', ?::bytea, ?::uuid, ARRAY[?::int, 2, 3],"
                     + " ?::text, NULL::int")) {
            for (int i = 0; i < 3; i++) {
                p.setInt(1, -i);
                p.setLong(2, 1L << (40 + i));
                p.setBigDecimal(3, new java.math.BigDecimal("12345.6789").add(java.math.BigDecimal.valueOf(i)));
                p.setDouble(4, 1.5 + i);
                p.setBoolean(5, i % 2 == 0);
                p.setDate(6, java.sql.Date.valueOf("2024-02-28"));
                p.setString(7, "2024-06-01 12:34:56.789+02");
                p.setBytes(8, new byte[] {0, 1, (byte) 0xfe, (byte) i});
                p.setObject(9, java.util.UUID.fromString("123e4567-e89b-12d3-a456-42661417400" + i));
                p.setInt(10, i);
                p.setString(11, "héllo wörld ✓ " + i);
                try (ResultSet rs = p.executeQuery()) {
                    rs.next();
                    StringBuilder b = new StringBuilder("types");
                    for (int col = 1; col <= 12; col++) {
                        Object v = col == 8 ? java.util.Arrays.toString(rs.getBytes(col)) : rs.getString(col);
                        b.append(' ').append(v);
                    }
                    say(b.toString());
                }
            }
        }
    }

    /** CopyManager: COPY FROM STDIN and COPY TO STDOUT, between ordinary statements. */
    void copy() throws Exception {
        try (Connection c = connect()) {
            try (Statement st = c.createStatement()) {
                st.execute("CREATE TABLE " + table + " (id int, s text)");
            }
            CopyManager cm = c.unwrap(PGConnection.class).getCopyAPI();
            StringBuilder data = new StringBuilder();
            for (int i = 0; i < 2000; i++) {
                data.append(i).append('\t').append("row ").append(i).append('\n');
            }
            say("copied in " + cm.copyIn("COPY " + table + " FROM STDIN", new StringReader(data.toString())));
            try {
                cm.copyIn("COPY " + table + " FROM STDIN", new StringReader("1\tok\nbad\trow\n"));
                say("bad copy: no error");
            } catch (SQLException e) {
                say("bad copy: " + e.getSQLState());
            }
            ByteArrayOutputStream sink = new ByteArrayOutputStream();
            long n = cm.copyOut("COPY (SELECT * FROM " + table + " ORDER BY id) TO STDOUT", sink);
            String text = sink.toString(StandardCharsets.UTF_8);
            say("copied out " + n + " same " + text.equals(data.toString()));
            try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT count(*) FROM " + table)) {
                say("count " + rows(rs));
            }
        }
    }

    /** setQueryTimeout: the driver sends a CancelRequest on a connection of its own. */
    void timeout() throws Exception {
        try (Connection c = connect(); Statement st = c.createStatement()) {
            st.setQueryTimeout(1);
            long start = System.nanoTime();
            fails("sleep", st, "SELECT pg_sleep(30)");
            say("cancelled within 10 s " + ((System.nanoTime() - start) / 1_000_000_000L < 10));
            st.setQueryTimeout(0);
            try (ResultSet rs = st.executeQuery("SELECT 42")) {
                say("after " + rows(rs));
            }
            c.setAutoCommit(false);
            st.setQueryTimeout(1);
            fails("sleep in txn", st, "SELECT pg_sleep(30)");
            fails("next in failed txn", st, "SELECT 1");
            c.rollback();
            try (ResultSet rs = st.executeQuery("SELECT 43")) {
                say("after rollback " + rows(rs));
            }
            c.commit();
        }
    }

    /** Errors in and out of transactions, and in the middle of named statements. */
    void errors() throws Exception {
        try (Connection c = connect("prepareThreshold", "1"); Statement st = c.createStatement()) {
            fails("division", st, "SELECT 1 / 0");
            fails("syntax", st, "SELEC 1");
            fails("missing", st, "SELECT * FROM no_such_table_here");
            try (PreparedStatement p = c.prepareStatement("SELECT 10 / ?::int")) {
                for (int i = 2; i >= -1; i--) {
                    p.setInt(1, i);
                    try (ResultSet rs = p.executeQuery()) {
                        say("divide " + rows(rs));
                    } catch (SQLException e) {
                        say("divide: " + e.getSQLState());
                    }
                }
            }
            c.setAutoCommit(false);
            fails("in txn", st, "SELECT 1 / 0");
            fails("after error in txn", st, "SELECT 1");
            c.rollback();
            c.setAutoCommit(true);
            try (ResultSet rs = st.executeQuery("SELECT 'still fine'")) {
                say("end " + rows(rs));
            }
        }
    }

    /** DatabaseMetaData: the driver's catalogue queries, big and prepared. */
    void metadata() throws Exception {
        try (Connection c = connect()) {
            try (Statement st = c.createStatement()) {
                st.execute("CREATE TABLE " + table + " (id int PRIMARY KEY, name varchar(20) NOT NULL, at timestamptz)");
            }
            DatabaseMetaData md = c.getMetaData();
            try (ResultSet rs = md.getTables(null, "public", table, new String[] {"TABLE"})) {
                StringBuilder b = new StringBuilder("tables");
                while (rs.next()) {
                    b.append(' ').append(rs.getString("TABLE_NAME"));
                }
                say(b.toString());
            }
            try (ResultSet rs = md.getColumns(null, "public", table, null)) {
                StringBuilder b = new StringBuilder("columns");
                while (rs.next()) {
                    b.append(' ').append(rs.getString("COLUMN_NAME")).append(':').append(rs.getString("TYPE_NAME"))
                            .append(':').append(rs.getInt("NULLABLE"));
                }
                say(b.toString());
            }
            try (ResultSet rs = md.getPrimaryKeys(null, "public", table)) {
                say("primary key " + (rs.next() ? rs.getString("COLUMN_NAME") : "none"));
            }
            say("read only " + c.isReadOnly() + " valid " + c.isValid(5));
        }
    }

    /** Session settings set by the client follow it from server to server. */
    void settings() throws Exception {
        try (Connection c = connect(); Statement st = c.createStatement()) {
            st.execute("CREATE SCHEMA " + table);
            st.execute("CREATE TABLE " + table + ".t (v text)");
            st.execute("INSERT INTO " + table + ".t VALUES ('from the schema')");
            st.execute("SET search_path = " + table + ", public");
            st.execute("SET statement_timeout = '25s'");
            c.setSchema(table);
            for (int i = 0; i < 5; i++) {
                try (ResultSet rs = st.executeQuery("SELECT v, current_setting('statement_timeout'),"
                        + " current_setting('application_name') FROM t")) {
                    say("round " + i + " " + rows(rs));
                }
                try (Connection other = connect(); Statement o = other.createStatement();
                     ResultSet rs = o.executeQuery("SELECT current_setting('search_path')")) {
                    say("other " + rows(rs));
                }
            }
            st.execute("RESET ALL");
            try (ResultSet rs = st.executeQuery("SELECT current_setting('statement_timeout')")) {
                say("after reset " + rows(rs));
            }
            st.execute("DROP SCHEMA " + table + " CASCADE");
        }
    }

    /** preferQueryMode=simple: everything as Query messages, parameters inlined by the driver. */
    void simpleMode() throws Exception {
        try (Connection c = connect("preferQueryMode", "simple");
             PreparedStatement p = c.prepareStatement("SELECT ?::int + 1, ?::text")) {
            for (int i = 0; i < 4; i++) {
                p.setInt(1, i);
                p.setString(2, "it's " + i);
                try (ResultSet rs = p.executeQuery()) {
                    say("simple " + rows(rs));
                }
            }
            try (Statement st = c.createStatement()) {
                boolean more = st.execute("SELECT 1; SELECT 2, 3; SET application_name = 'x'; SELECT current_setting('application_name')");
                int results = 0;
                StringBuilder b = new StringBuilder("multi");
                while (more || st.getUpdateCount() != -1) {
                    if (more) {
                        try (ResultSet rs = st.getResultSet()) {
                            b.append(" [").append(rows(rs)).append(']');
                        }
                    }
                    results++;
                    more = st.getMoreResults();
                }
                say(b + " results " + results);
            }
        }
    }

    /** DEALLOCATE ALL and DISCARD ALL: the driver sees the tag and prepares its statements again. */
    void deallocate() throws Exception {
        try (Connection c = connect("prepareThreshold", "1");
             PreparedStatement p = c.prepareStatement("SELECT ?::int + 1000");
             Statement st = c.createStatement()) {
            for (String reset : new String[] {"DEALLOCATE ALL", "DISCARD ALL", "SELECT 1"}) {
                for (int i = 0; i < 3; i++) {
                    p.setInt(1, i);
                    try (ResultSet rs = p.executeQuery()) {
                        say(reset + " before " + rows(rs));
                    }
                }
                st.execute(reset);
                for (int i = 0; i < 3; i++) {
                    p.setInt(1, i);
                    try (ResultSet rs = p.executeQuery()) {
                        say(reset + " after " + rows(rs));
                    } catch (SQLException e) {
                        say(reset + " after: " + e.getSQLState());
                    }
                }
            }
        }
    }

    /** A statement cache smaller than the statements in use: the driver closes (Close 'S') and
     * prepares again as it goes round. */
    void statementCache() throws Exception {
        try (Connection c = connect("prepareThreshold", "1", "preparedStatementCacheQueries", "2")) {
            for (int round = 0; round < 4; round++) {
                for (int k = 0; k < 5; k++) {
                    try (PreparedStatement p = c.prepareStatement("SELECT ?::int * " + k)) {
                        p.setInt(1, round);
                        try (ResultSet rs = p.executeQuery()) {
                            say("round " + round + " k " + k + " " + rows(rs));
                        }
                    }
                }
            }
        }
    }

    /** The table under a named statement changes: "cached plan must not change result type", which
     * autosave=conservative answers by preparing the statement again and retrying. */
    void planChange() throws Exception {
        for (String autosave : new String[] {"never", "conservative"}) {
            String t = table + "_" + autosave;
            try (Connection c = connect("prepareThreshold", "1", "autosave", autosave);
                 Connection other = connect();
                 Statement o = other.createStatement()) {
                o.execute("CREATE TABLE " + t + " (id int)");
                o.execute("INSERT INTO " + t + " VALUES (1)");
                try (PreparedStatement p = c.prepareStatement("SELECT * FROM " + t)) {
                    for (int i = 0; i < 2; i++) {
                        try (ResultSet rs = p.executeQuery()) {
                            say(autosave + " before " + rows(rs));
                        }
                    }
                    o.execute("ALTER TABLE " + t + " ADD COLUMN v text DEFAULT 'new'");
                    for (int i = 0; i < 3; i++) {
                        try (ResultSet rs = p.executeQuery()) {
                            say(autosave + " after " + rows(rs));
                        } catch (SQLException e) {
                            say(autosave + " after: " + e.getSQLState());
                        }
                    }
                }
                o.execute("DROP TABLE " + t);
            }
        }
    }

    /** Channel and payload of each notification, in the order the driver got them (the sender's
     * pid is left out: through a pooler it is a server's, never the client's own key). */
    private static List<String> names(PGNotification[] got) {
        List<String> r = new ArrayList<>();
        if (got != null) {
            for (PGNotification n : got) {
                r.add(n.getName() + ":" + n.getParameter());
            }
        }
        return r;
    }

    /** Waits up to 10 s for `count` notifications; fewer after that is what the transcript shows. */
    private static List<String> await(PGConnection c, int count) throws SQLException {
        List<String> r = new ArrayList<>();
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (r.size() < count && System.nanoTime() < deadline) {
            r.addAll(names(c.getNotifications(500)));
        }
        return r;
    }

    /** LISTEN in transaction mode: the listener keeps its server, so what others NOTIFY reaches it
     * while it is idle, a rolled-back NOTIFY never does, one sent during its own transaction
     * waits for the end of it, and after UNLISTEN nothing more comes. */
    void notifications() throws Exception {
        String chan = table + "_chan";
        try (Connection l = connect(); Connection n = connect();
             Statement ls = l.createStatement(); Statement ns = n.createStatement()) {
            PGConnection pl = l.unwrap(PGConnection.class);
            ls.execute("LISTEN " + chan);
            ns.execute("NOTIFY " + chan + ", 'one'");
            n.setAutoCommit(false);
            ns.execute("SELECT pg_notify('" + chan + "', 'two')");
            n.commit();
            ns.execute("NOTIFY " + chan + ", 'rolled back'");
            n.rollback();
            n.setAutoCommit(true);
            ns.execute("NOTIFY " + chan + ", 'three'");
            say("idle " + await(pl, 3));
            ls.execute("NOTIFY " + chan + ", 'self'");
            say("own " + names(pl.getNotifications()));
            l.setAutoCommit(false);
            try (ResultSet rs = ls.executeQuery("SELECT 7")) {
                say("in txn " + rows(rs));
            }
            ns.execute("NOTIFY " + chan + ", 'during txn'");
            say("during txn " + names(pl.getNotifications(300)));
            l.commit();
            l.setAutoCommit(true);
            say("after commit " + await(pl, 1));
            ls.execute("UNLISTEN " + chan);
            ns.execute("NOTIFY " + chan + ", 'after unlisten'");
            say("after unlisten " + names(pl.getNotifications(300)));
            try (ResultSet rs = ls.executeQuery("SELECT 8")) {
                say("still " + rows(rs));
            }
        }
    }

    /** Large objects: the driver's LargeObjectManager calls lo_* through FunctionCall messages
     * (the fast-path protocol), inside a transaction. */
    void largeObject() throws Exception {
        byte[] data = new byte[100_000];
        for (int i = 0; i < data.length; i++) {
            data[i] = (byte) (i * 31 + 7);
        }
        try (Connection c = connect()) {
            c.setAutoCommit(false);
            LargeObjectManager lom = c.unwrap(PGConnection.class).getLargeObjectAPI();
            long oid = lom.createLO(LargeObjectManager.READWRITE);
            try (LargeObject lo = lom.open(oid, LargeObjectManager.WRITE)) {
                lo.write(data);
                say("written, at " + lo.tell());
            }
            c.commit();
            try (LargeObject lo = lom.open(oid, LargeObjectManager.READ)) {
                byte[] back = lo.read(data.length + 10);
                say("read " + back.length + " same " + Arrays.equals(back, data));
                lo.seek(50_000);
                say("at " + lo.tell() + " " + Arrays.toString(lo.read(4)) + " size " + lo.size());
            }
            c.commit();
            try (LargeObject lo = lom.open(oid, LargeObjectManager.WRITE)) {
                lo.truncate(10);
                say("truncated, size " + lo.size());
            }
            c.rollback();
            try (LargeObject lo = lom.open(oid, LargeObjectManager.READ)) {
                say("after rollback size " + lo.size());
            }
            lom.unlink(oid);
            c.commit();
            try {
                lom.open(oid, LargeObjectManager.READ);
                say("open unlinked: no error");
            } catch (SQLException e) {
                say("open unlinked: " + e.getSQLState());
            }
            c.rollback();
            try (Statement st = c.createStatement(); ResultSet rs = st.executeQuery("SELECT 9")) {
                say("after " + rows(rs));
            }
            c.commit();
        }
    }
}
