"""psycopg 3 over TLS with a SCRAM password: run by tests/it/security.rs with the port."""

import sys

import psycopg

port = int(sys.argv[1])
params = dict(host="127.0.0.1", port=port, user="sabot", dbname="sabot", password="sup3r secret", autocommit=True)

with psycopg.connect(sslmode="require", **params) as conn:
    assert conn.pgconn.ssl_in_use, "the connection is not encrypted"
    with conn.cursor() as cur:
        cur.execute("SELECT %s::int + 1", (41,))
        assert cur.fetchone() == (42,)

try:
    psycopg.connect(sslmode="require", **{**params, "password": "wrong"})
except psycopg.OperationalError as error:
    assert "password authentication failed" in str(error), error
else:
    raise AssertionError("a wrong password was accepted")

print("ok")
