//! pg_catalog as psql sees it: the real psql's meta-commands against a server, their
//! output compared with what Postgres' psql prints for the same objects.

use std::process::Command;

use crate::harness::TestServer;

/// Runs each of `commands` in its own `psql -X -c` and returns stdout and stderr together.
fn psql(port: u16, commands: &[&str]) -> String {
    let mut out = String::new();
    for command in commands {
        let output = Command::new("psql")
            .args([
                "-X",
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-U",
                "sabot",
                "-d",
                "sabot",
                "-c",
                command,
            ])
            .output()
            .expect("psql is installed (.ci/run installs postgresql-client)");
        out.push_str(&String::from_utf8_lossy(&output.stdout));
        out.push_str(&String::from_utf8_lossy(&output.stderr));
    }
    out
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
