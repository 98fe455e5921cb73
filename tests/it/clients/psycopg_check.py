"""psycopg 3 against Sabot: server-side parameters, types, errors, COPY.

Run by tests/it/protocol.rs with the server's port as the only argument.
"""
import datetime
import decimal
import sys

import psycopg

port = int(sys.argv[1])
with psycopg.connect(host="127.0.0.1", port=port, user="sabot", dbname="sabot", autocommit=True) as conn:
    # The server reports a Postgres version drivers can parse, and says it is Sabot.
    assert conn.info.server_version == 160006, conn.info.server_version
    assert conn.info.parameter_status("server_version").startswith("16.6 (Sabot"), conn.info.parameter_status("server_version")
    cur = conn.cursor()
    cur.execute(
        "CREATE TABLE items (id BIGINT PRIMARY KEY, name TEXT, price NUMERIC(10,2), ok BOOLEAN, at TIMESTAMP)"
    )
    # psycopg 3 sends these as server-side parameters ($1, $2, ...) over the extended protocol.
    cur.execute(
        "INSERT INTO items VALUES (%s, %s, %s, %s, %s)",
        (1, "apple", decimal.Decimal("1.25"), True, datetime.datetime(2026, 1, 2, 3, 4, 5)),
    )
    cur.executemany(
        "INSERT INTO items (id, name, price) VALUES (%s, %s, %s)",
        [(2, "pear", decimal.Decimal("2.50")), (3, None, None)],
    )
    cur.execute("SELECT id, name, price, ok, at FROM items WHERE id = %s", (1,))
    row = cur.fetchone()
    assert row == (1, "apple", decimal.Decimal("1.25"), True, datetime.datetime(2026, 1, 2, 3, 4, 5)), row
    cur.execute("SELECT count(*) FROM items WHERE price > %s", (decimal.Decimal("1.00"),))
    assert cur.fetchone() == (2,)
    cur.execute("SELECT name FROM items WHERE id = %s", (3,))
    assert cur.fetchone() == (None,)
    # binary results
    bcur = conn.cursor(binary=True)
    bcur.execute("SELECT id, name, price, at FROM items WHERE id = %s", (1,))
    assert bcur.fetchone() == (1, "apple", decimal.Decimal("1.25"), datetime.datetime(2026, 1, 2, 3, 4, 5))
    # errors carry their SQLSTATE
    try:
        cur.execute("INSERT INTO items (id) VALUES (%s)", (1,))
        raise AssertionError("duplicate key accepted")
    except psycopg.errors.UniqueViolation:
        pass
    try:
        cur.execute("SELECT * FROM nowhere")
        raise AssertionError("missing table accepted")
    except psycopg.errors.UndefinedTable:
        pass
    # COPY FROM STDIN
    with cur.copy("COPY items (id, name) FROM STDIN") as copy:
        copy.write_row((10, "copied"))
        copy.write_row((11, None))
    cur.execute("SELECT count(*) FROM items WHERE id >= 10")
    assert cur.fetchone() == (2,)

# A non-autocommit connection wraps statements in BEGIN ... COMMIT.
with psycopg.connect(host="127.0.0.1", port=port, user="sabot", dbname="sabot") as conn:
    conn.execute("INSERT INTO items (id, name) VALUES (%s, %s)", (20, "in a transaction"))
    conn.commit()
    assert conn.execute("SELECT name FROM items WHERE id = 20").fetchone() == ("in a transaction",)
print("psycopg ok")
