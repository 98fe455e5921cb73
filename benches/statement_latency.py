# Per-statement latency of short statements (planning-dominated) against one running
# server: `python3 benches/statement_latency.py PORT ROUNDS` (psycopg). Compare two
# builds by running each in turn on the same machine; see docs/benchmarks.md.
import sys, time, psycopg
port = int(sys.argv[1]); rounds = int(sys.argv[2])
conn = psycopg.connect(f"host=127.0.0.1 port={port} user=sabot dbname=sabot", autocommit=True)
cur = conn.cursor()
cur.execute("CREATE TABLE IF NOT EXISTS pb (id INT PRIMARY KEY, x DOUBLE PRECISION, n NUMERIC(10,2), d DATE)")
cur.execute("INSERT INTO pb SELECT i, i * 0.5, i * 1, DATE '2026-01-01' FROM generate_series(1, 1000) AS g(i) ON CONFLICT DO NOTHING")
queries = [
    "SELECT id, x * 2, n + 1 FROM pb WHERE id = 7",
    "SELECT CASE WHEN x > 100 THEN x ELSE 0 END, coalesce(n, 0) FROM pb WHERE id = 9",
    "SELECT count(*), sum(n) FROM pb WHERE x BETWEEN 10 AND 20",
    "SELECT d + 1, id FROM pb WHERE id IN (1, 2, 3)",
]
for q in queries:  # warm
    cur.execute(q); cur.fetchall()
start = time.perf_counter()
for _ in range(rounds):
    for q in queries:
        cur.execute(q); cur.fetchall()
elapsed = time.perf_counter() - start
print(f"{rounds * len(queries)} statements, {elapsed * 1000 / (rounds * len(queries)):.2f} ms each")
