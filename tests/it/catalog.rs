//! pg_catalog as psql sees it: the real psql's meta-commands against a server, their
//! output compared with what Postgres' psql prints for the same objects.

use crate::harness::TestServer;

/// Runs each of `commands` in its own psql session; returns stdout and stderr together.
fn psql(port: u16, commands: &[&str]) -> String {
    commands.iter().map(|command| psql_session(port, &[command])).collect()
}

/// Runs `commands` in one psql session, in order; returns stdout and stderr together.
fn psql_session(port: u16, commands: &[&str]) -> String {
    let (stdout, stderr) = crate::harness::psql_session(port, &[], commands);
    stdout + &stderr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_and_describes_relations_schemas_databases_and_roles() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE bid (auction INT PRIMARY KEY, price INT NOT NULL, note TEXT DEFAULT 'none', \
               amount NUMERIC(10,2), at TIMESTAMPTZ);
             CREATE MATERIALIZED VIEW top AS SELECT auction, max(price) AS high FROM bid GROUP BY auction;
             CREATE SCHEMA archive;
             CREATE TABLE archive.old (id INT);
             CREATE ROLE analyst LOGIN;",
        )
        .await
        .unwrap();
    let port = server.addr.port();
    let commands = [
        "\\d",
        "\\dt",
        "\\dm",
        "\\dv",
        "\\dt archive.*",
        "\\dn",
        "\\l",
        "\\du",
        "\\d bid",
        "\\d top",
        "\\d nothing",
        "\\di",
        "\\df",
    ];
    let out = tokio::task::spawn_blocking(move || psql(port, &commands)).await.unwrap();
    let expected = r#"             List of relations
 Schema | Name |       Type        | Owner 
--------+------+-------------------+-------
 public | bid  | table             | sabot
 public | top  | materialized view | sabot
(2 rows)

       List of relations
 Schema | Name | Type  | Owner 
--------+------+-------+-------
 public | bid  | table | sabot
(1 row)

             List of relations
 Schema | Name |       Type        | Owner 
--------+------+-------------------+-------
 public | top  | materialized view | sabot
(1 row)

Did not find any relations.
       List of relations
 Schema  | Name | Type  | Owner 
---------+------+-------+-------
 archive | old  | table | sabot
(1 row)

    List of schemas
     Name      | Owner 
---------------+-------
 archive       | sabot
 public        | sabot
 sabot_catalog | sabot
(3 rows)

                                        List of databases
 Name  | Owner | Encoding | Collate |  Ctype  | ICU Locale | Locale Provider | Access privileges 
-------+-------+----------+---------+---------+------------+-----------------+-------------------
 sabot | sabot | UTF8     | C.UTF-8 | C.UTF-8 |            | libc            | 
(1 row)

                             List of roles
 Role name |                  Attributes                   | Member of 
-----------+-----------------------------------------------+-----------
 analyst   |                                               | 
 sabot     | Superuser, Create role, Create DB, Bypass RLS | 

                         Table "public.bid"
 Column  |           Type           | Collation | Nullable | Default 
---------+--------------------------+-----------+----------+---------
 auction | integer                  |           | not null | 
 price   | integer                  |           | not null | 
 note    | text                     |           |          | 'none'
 amount  | numeric(10,2)            |           |          | 
 at      | timestamp with time zone |           |          | 
Indexes:
    "bid_pkey" PRIMARY KEY, btree (auction)

           Materialized view "public.top"
 Column  |  Type   | Collation | Nullable | Default 
---------+---------+-----------+----------+---------
 auction | integer |           |          | 
 high    | integer |           |          | 

Did not find any relation named "nothing".
             List of relations
 Schema |   Name   | Type  | Owner | Table 
--------+----------+-------+-------+-------
 public | bid_pkey | index | sabot | bid
(1 row)

                       List of functions
 Schema | Name | Result data type | Argument data types | Type 
--------+------+------------------+---------------------+------
(0 rows)

"#;
    assert_eq!(out, expected);
}

/// Views in psql: `\dv`, `\d view`, and the verbose forms `\d+` with a view's definition
/// and a table's storage columns; `\x` output; the connection functions.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_describes_views_verbosely_and_expands_rows() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE bid (auction INT PRIMARY KEY, price INT NOT NULL, note TEXT DEFAULT 'none');
             INSERT INTO bid VALUES (1, 20, 'a'), (2, 5, 'b');
             CREATE VIEW high AS SELECT auction, price FROM bid WHERE price > 10;",
        )
        .await
        .unwrap();
    let port = server.addr.port();
    let commands = ["\\dv", "\\d high", "\\d+ high", "\\d+ bid"];
    let out = tokio::task::spawn_blocking(move || psql(port, &commands)).await.unwrap();
    // As Postgres' psql prints the same objects, except that a view's definition is its
    // query as written (Postgres prints its own deparsed form) and a default is its
    // expression without a cast.
    let expected = r#"      List of relations
 Schema | Name | Type | Owner 
--------+------+------+-------
 public | high | view | sabot
(1 row)

                 View "public.high"
 Column  |  Type   | Collation | Nullable | Default 
---------+---------+-----------+----------+---------
 auction | integer |           |          | 
 price   | integer |           |          | 

                             View "public.high"
 Column  |  Type   | Collation | Nullable | Default | Storage | Description 
---------+---------+-----------+----------+---------+---------+-------------
 auction | integer |           |          |         | plain   | 
 price   | integer |           |          |         | plain   | 
View definition:
 SELECT auction, price FROM bid WHERE price > 10;

                                            Table "public.bid"
 Column  |  Type   | Collation | Nullable | Default | Storage  | Compression | Stats target | Description 
---------+---------+-----------+----------+---------+----------+-------------+--------------+-------------
 auction | integer |           | not null |         | plain    |             |              | 
 price   | integer |           | not null |         | plain    |             |              | 
 note    | text    |           |          | 'none'  | extended |             |              | 
Indexes:
    "bid_pkey" PRIMARY KEY, btree (auction)
Access method: heap

"#;
    assert_eq!(out, expected);

    let expanded = tokio::task::spawn_blocking(move || {
        psql_session(port, &["\\x on", "SELECT auction, price FROM high", "SELECT inet_server_port()"])
    })
    .await
    .unwrap();
    let rule = "-".repeat(port.to_string().len() + 1);
    let expected = format!(
        "Expanded display is on.\n-[ RECORD 1 ]\nauction | 1\nprice   | 20\n\n-[ RECORD 1 ]----+{rule}\ninet_server_port | {port}\n\n"
    );
    assert_eq!(expanded, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_shows_check_constraints_and_comments() {
    let server = TestServer::start().await;
    let client = server.client().await;
    client
        .batch_execute(
            "CREATE TABLE stock (item TEXT PRIMARY KEY, qty INT CHECK (qty >= 0));
             COMMENT ON TABLE stock IS 'what we have';
             COMMENT ON COLUMN stock.qty IS 'units';",
        )
        .await
        .unwrap();
    let port = server.addr.port();
    let out = tokio::task::spawn_blocking(move || psql(port, &["\\d stock", "\\d+ stock", "\\dt+ stock"]))
        .await
        .unwrap();
    // As psql prints them against Postgres 15.
    let checks = "Indexes:\n    \"stock_pkey\" PRIMARY KEY, btree (item)\nCheck constraints:\n    \
                  \"stock_qty_check\" CHECK (qty >= 0)\n";
    assert_eq!(out.matches(checks).count(), 2, "{out}");
    assert!(out.contains(" qty    | integer |           |          |         | plain    |"), "{out}");
    assert!(out.contains("| units\n"), "\\d+ shows the column's comment: {out}");
    assert!(out.contains("| what we have\n"), "\\dt+ shows the table's comment: {out}");
}
