//! The SQL front end: any text is parsed (with the depth checks and rewrites Sabot
//! applies) and every statement planned by DataFusion against an empty database, without
//! a panic or a stack overflow. Statements are prepared, not run (a fuzzed query may
//! legitimately run forever). `cargo fuzz run sql` (see docs/security.md).

#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use sabot::{Config, Database, Session};

struct Planner {
    runtime: tokio::runtime::Runtime,
    session: Arc<tokio::sync::Mutex<Session>>,
    _db: Arc<Database>,
}

fn planner() -> &'static Planner {
    static PLANNER: OnceLock<Planner> = OnceLock::new();
    PLANNER.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_stack_size(sabot::engine::execute::STACK_BYTES)
            .enable_all()
            .build()
            .expect("a runtime");
        let db = runtime.block_on(Database::open(Config { ephemeral: true, ..Config::default() })).expect("opens");
        let mut session = db.session();
        runtime.block_on(async {
            for sql in ["CREATE TABLE t (a INT PRIMARY KEY, b TEXT, c DOUBLE PRECISION)", "CREATE TABLE u (a INT, d DATE)"] {
                for outcome in session.execute(sql).await {
                    outcome.expect("setup statement runs");
                }
            }
        });
        Planner { runtime, session: Arc::new(tokio::sync::Mutex::new(session)), _db: db }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    let planner = planner();
    let sql = sql.to_string();
    // Planning runs on a worker thread, with the stack the server gives sessions; a panic
    // there is raised again here, for the fuzzer to see.
    let session = planner.session.clone();
    let task = planner.runtime.spawn(async move {
        let _ = session.lock().await.prepare(&sql).await;
    });
    if let Err(error) = planner.runtime.block_on(task) {
        std::panic::resume_unwind(error.into_panic());
    }
});
