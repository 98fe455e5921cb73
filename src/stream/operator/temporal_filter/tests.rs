use std::sync::atomic::{AtomicI64, Ordering};

use datafusion::physical_expr::expressions::Column;

use super::*;
use crate::stream::operator::testing::{Harness, chunk, lines, pretty, schema};

/// Rows (k, from, until) shown while the clock is in [from, until); the clock is `time`.
fn operator(time: Arc<AtomicI64>) -> TemporalFilterOperator {
    let condition = |column: usize, name: &str, enters: bool, inclusive: bool| TemporalCondition {
        time: Arc::new(Column::new(name, column)),
        enters,
        inclusive,
        text: name.into(),
    };
    TemporalFilterOperator::new(
        vec![condition(1, "from", true, true), condition(2, "until", false, false)],
        vec![0],
        7,
        schema("k:int from:int until:int"),
        Arc::new(move || time.load(Ordering::SeqCst)),
    )
    .unwrap()
}

fn barrier(op: &mut TemporalFilterOperator, h: &mut Harness) -> String {
    let out = pretty(&op.on_barrier(&h.ctx, h.epoch).unwrap());
    h.commit(op);
    h.epoch += 1;
    out
}

#[test]
fn rows_enter_and_leave_as_the_barrier_clock_passes() {
    let time = Arc::new(AtomicI64::new(100));
    let mut op = operator(time.clone());
    let mut h = Harness::new();
    let input = schema("k:int from:int until:int");
    // Shows now; shows later; has left; NULL never shows.
    let out = op.on_chunk(&h.ctx, 0, chunk(&input, "+ 1 50 150\n+ 2 120 200\n+ 3 10 90\n+ 4 . 200")).unwrap();
    assert_eq!(pretty(&out), "+ 1 50 150");
    assert_eq!(barrier(&mut op, &mut h), "");

    time.store(130, Ordering::SeqCst);
    assert_eq!(barrier(&mut op, &mut h), "+ 2 120 200");
    time.store(160, Ordering::SeqCst);
    assert_eq!(barrier(&mut op, &mut h), "- 1 50 150");

    // A deletion retracts a shown row where it is; a row that enters and leaves between
    // two barriers never shows.
    let out = op.on_chunk(&h.ctx, 0, chunk(&input, "- 2 120 200\n+ 5 170 180\n+ 6 175 300")).unwrap();
    assert_eq!(pretty(&out), "- 2 120 200");
    time.store(190, Ordering::SeqCst);
    assert_eq!(barrier(&mut op, &mut h), "+ 6 175 300");

    // A restarted filter finds its rows by time.
    let mut op = operator(time.clone());
    time.store(180, Ordering::SeqCst);
    assert_eq!(barrier(&mut op, &mut h), "");
    let out = op.on_chunk(&h.ctx, 0, chunk(&input, "+ 7 100 250")).unwrap();
    assert_eq!(pretty(&out), "+ 7 100 250");
    time.store(400, Ordering::SeqCst);
    assert_eq!(barrier(&mut op, &mut h), lines("- 7 100 250\n- 6 175 300"));
    // Nothing is kept once every row has left.
    assert_eq!(h.stored_keys(7), 0);
}
