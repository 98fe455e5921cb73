//! Top-N: ORDER BY ... LIMIT n OFFSET m, and per-group top-N (ROW_NUMBER() OVER
//! (PARTITION BY ... ORDER BY ...) <= n), which also outputs the row number.
//!
//! Keeps every input row in a state table keyed by (group, sort key, stream key), so a
//! group's rows are read in output order. In memory each group keeps its first rows in
//! that order, an ordered map of at least the visible window's (rows m+1 .. m+n) and at
//! most about twice that when loaded, or all of them (then it is complete). Changes to
//! rows within those first rows change the map (written at the barrier); changes after
//! them are written to the state table alone; when deletes leave fewer than m+n rows in
//! the map, the next rows are read from the state table. For each group a chunk touches
//! the operator compares the group's window before and after applying the chunk and emits
//! the difference: rows that left the window are deleted, rows that entered are inserted,
//! and rows whose row number or other columns changed are updated. Barriers only seal
//! state.

use std::collections::{BTreeMap, HashMap};

use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;

use super::late::Closing;
use super::{Operator, OperatorContext};
use crate::common::Result;
use crate::common::row::RowCodec;
use crate::plan::TopNNode;
use crate::state::{
    CacheValue, CachedTable, Epoch, RowsValue, Slot, Snapshot, StateMemory, TableId, WriteBatch, prefix_end,
};
use crate::stream::message::{Chunk, Message, Op};

pub struct TopNOperator {
    node: TopNNode,
    /// Input columns shown before the row number.
    visible: usize,
    /// Encodes (sort key, stream key): a row's key within its group.
    converter: RowConverter,
    group_codec: Option<RowCodec>,
    rows: RowCodec,
    stream_key: Vec<usize>,
    groups: CachedTable<TopGroup>,
    /// Rows a group loads into memory at most (beyond the window, so that deletes rarely
    /// need a read).
    capacity: usize,
    schema: SchemaRef,
    /// Groups behind the first partition column's watermark (see `TopNNode::closes`).
    closing: Option<Closing>,
}

/// A row in a group's window: its key within the group and encoded row.
type Entry = (Box<[u8]>, Box<[u8]>);

/// A group's first rows in order: every row with a key up to `bound`, or all of them
/// when `complete`.
struct TopGroup {
    rows: BTreeMap<Box<[u8]>, Box<[u8]>>,
    complete: bool,
    /// The last key read from the state table (rows after it are only there).
    bound: Option<Box<[u8]>>,
    capacity: usize,
    /// Keys of rows of the map inserted or deleted since the last seal (maybe repeated).
    changed: Vec<Box<[u8]>>,
    bytes: usize,
}

/// Bytes a B-tree entry costs beyond its key's and row's bytes, roughly.
const ROW_ENTRY_BYTES: usize = 64;

impl TopGroup {
    fn new(capacity: usize) -> Self {
        TopGroup {
            rows: BTreeMap::new(),
            complete: true,
            bound: None,
            capacity,
            changed: Vec::new(),
            bytes: 0,
        }
    }

    fn put(&mut self, key: &[u8], row: &[u8]) {
        if let Some(old) = self.rows.insert(key.into(), row.into()) {
            self.bytes -= ROW_ENTRY_BYTES + key.len() + old.len();
        }
        self.bytes += ROW_ENTRY_BYTES + key.len() + row.len();
    }

    fn mark(&mut self, key: &[u8]) {
        self.bytes += key.len();
        self.changed.push(key.into());
    }

    /// Whether the row of `key` belongs in the map: the map holds the whole group, or
    /// every row up to a key at or after it.
    fn covers(&self, key: &[u8]) -> bool {
        self.complete || self.bound.as_deref().is_some_and(|bound| key <= bound)
    }

    /// Rows `offset+1 ..= offset+limit`.
    fn window(&self, offset: usize, limit: usize) -> Vec<Entry> {
        self.rows.iter().skip(offset).take(limit).map(|(k, v)| (k.clone(), v.clone())).collect()
    }
}

impl CacheValue for TopGroup {
    fn heap_bytes(&self) -> usize {
        self.bytes + self.changed.capacity() * std::mem::size_of::<Box<[u8]>>()
    }
}

impl RowsValue for TopGroup {
    fn empty() -> Self {
        TopGroup::new(usize::MAX)
    }

    fn load_row(&mut self, key: &[u8], row: &[u8]) -> Result<bool> {
        if self.rows.len() >= self.capacity {
            self.complete = false;
            return Ok(false);
        }
        self.put(key, row);
        self.bound = Some(key.into());
        Ok(true)
    }

    fn seal_rows(&mut self, write: &mut crate::state::RowWriter<'_>) {
        // Every listing was counted (`mark`), repeats included.
        self.bytes -= self.changed.iter().map(|k| k.len()).sum::<usize>();
        for key in &crate::state::take_changed(&mut self.changed) {
            write(key, self.rows.get(key).map(|row| row.to_vec()));
        }
    }
}

impl TopNOperator {
    pub fn new(
        node: &TopNNode,
        input_types: &[DataType],
        visible: usize,
        stream_key: Vec<usize>,
        schema: SchemaRef,
        memory: StateMemory,
    ) -> Result<Self> {
        let mut fields: Vec<SortField> = node
            .order_by
            .iter()
            .map(|(i, o)| SortField::new_with_options(input_types[*i].clone(), *o))
            .collect();
        fields.extend(
            stream_key
                .iter()
                .map(|&i| SortField::new_with_options(input_types[i].clone(), SortOptions::default())),
        );
        let group_types: Vec<DataType> = node.group_by.iter().map(|&i| input_types[i].clone()).collect();
        let shown = node.offset.saturating_add(node.limit);
        let closing = match node.closes {
            true => {
                let column = node.group_by[0];
                Some(Closing::new(column, input_types[column].clone(), false, node.table)?)
            }
            false => None,
        };
        Ok(TopNOperator {
            closing,
            converter: RowConverter::new(fields)?,
            group_codec: if group_types.is_empty() { None } else { Some(RowCodec::new(&group_types)?) },
            rows: RowCodec::new(input_types)?,
            groups: CachedTable::new(node.table, memory),
            capacity: shown.saturating_mul(2).saturating_add(16),
            node: node.clone(),
            visible,
            stream_key,
            schema,
        })
    }

    fn window(&self, slot: Slot) -> Vec<Entry> {
        self.groups.get(slot).map_or_else(Vec::new, |g| g.window(self.node.offset, self.node.limit))
    }

    /// Reads the group's next rows from the state table when deletes left fewer than the
    /// window needs in memory.
    fn refill(&mut self, snapshot: &dyn Snapshot, group: &[u8], slot: Slot) -> Result<()> {
        let wanted = self.node.offset.saturating_add(self.node.limit);
        let capacity = self.capacity;
        let Some(top) = self.groups.get(slot) else { return Ok(()) };
        if top.complete || top.rows.len() >= wanted {
            return Ok(());
        }
        // The first key after the bound (a key's successor is the key followed by 0).
        let start = match &top.bound {
            Some(bound) => [group, bound, &[0]].concat(),
            None => group.to_vec(),
        };
        let room = capacity.saturating_sub(top.rows.len()).max(1);
        let mut loaded: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut more = false;
        let end = prefix_end(group);
        self.groups.table().scan_range(snapshot, &start, end.as_deref(), &mut |k, v| {
            if loaded.len() == room {
                more = true;
                return Ok(false);
            }
            loaded.push((k[group.len()..].to_vec(), v.to_vec()));
            Ok(true)
        })?;
        let top = self.groups.change(slot);
        for (key, row) in &loaded {
            top.put(key, row);
        }
        if let Some((last, _)) = loaded.last() {
            top.bound = Some(last.as_slice().into());
        }
        top.complete = !more;
        self.groups.recharge(slot);
        Ok(())
    }

    fn build(&self, ops: Vec<Op>, rows: Vec<Box<[u8]>>, ranks: Vec<u64>) -> Result<Vec<Chunk>> {
        let mut added = Vec::new();
        if self.node.with_rank && !ops.is_empty() {
            let rank_type = self.schema.field(self.visible).data_type().clone();
            let values = ranks.iter().map(|r| ScalarValue::UInt64(Some(*r)).cast_to(&rank_type));
            added.push(ScalarValue::iter_to_array(values.collect::<std::result::Result<Vec<_>, _>>()?)?);
        }
        super::rows_with_columns(&self.schema, &self.rows, self.visible, ops, &rows, added)
    }
}

impl Operator for TopNOperator {
    fn name(&self) -> &'static str {
        "TopN"
    }

    fn state_tables(&self) -> Vec<TableId> {
        vec![self.node.table]
    }

    fn on_chunk(&mut self, ctx: &OperatorContext, _input: usize, chunk: Chunk) -> Result<Vec<Chunk>> {
        let chunk = match &mut self.closing {
            Some(closing) => closing.admit(ctx.snapshot.as_ref(), chunk)?,
            None => chunk,
        };
        let columns: Vec<ArrayRef> =
            self.node.group_by.iter().map(|&i| chunk.data.column(i).clone()).collect();
        let groups = super::materialize::encode_keys(self.group_codec.as_ref(), &columns, chunk.len())?;
        let mut columns: Vec<ArrayRef> =
            self.node.order_by.iter().map(|(i, _)| chunk.data.column(*i).clone()).collect();
        columns.extend(self.stream_key.iter().map(|&i| chunk.data.column(i).clone()));
        let keys = self.converter.convert_columns(&columns)?;
        let rows = self.rows.encode(chunk.data.columns())?;
        let snapshot = ctx.snapshot.as_ref();
        let capacity = self.capacity;

        let (mut deletes, mut updates, mut inserts) = (Vec::new(), Vec::new(), Vec::new());
        for (group, group_rows) in super::rows_by_key(&groups) {
            let slot = self.groups.rows_slot_from(snapshot, group, || TopGroup::new(capacity))?;
            let before = self.window(slot);
            for &row in &group_rows {
                let (key, data) = (keys.row(row).data(), rows.row(row).data());
                let top = self.groups.change(slot);
                let insert = Chunk::is_insert(chunk.ops[row]);
                if top.covers(key) {
                    match insert {
                        true => top.put(key, data),
                        false => {
                            if let Some(old) = top.rows.remove(key) {
                                top.bytes -= ROW_ENTRY_BYTES + key.len() + old.len();
                            }
                        }
                    }
                    top.mark(key);
                } else {
                    // After the rows in memory: the state table alone holds it.
                    let table = self.groups.table_mut();
                    match insert {
                        true => table.put([group, key].concat(), data.to_vec()),
                        false => table.delete([group, key].concat()),
                    }
                }
            }
            self.refill(snapshot, group, slot)?;
            self.groups.recharge(slot);
            let after = self.window(slot);
            let rank_before: HashMap<&[u8], usize> =
                before.iter().enumerate().map(|(i, e)| (&*e.0, i)).collect();
            let rank_after: HashMap<&[u8], (usize, &Box<[u8]>)> =
                after.iter().enumerate().map(|(i, e)| (&*e.0, (i, &e.1))).collect();
            for (i, (key, row)) in before.iter().enumerate() {
                match rank_after.get(&**key) {
                    None => deletes.push((row.clone(), i as u64 + 1)),
                    // Same key: its row number moved, or its other columns changed.
                    Some(&(j, new_row)) if (j != i && self.node.with_rank) || new_row != row => {
                        updates.push((row.clone(), i as u64 + 1, new_row.clone(), j as u64 + 1))
                    }
                    Some(_) => {}
                }
            }
            for (j, (key, row)) in after.iter().enumerate() {
                if !rank_before.contains_key(&**key) {
                    inserts.push((row.clone(), j as u64 + 1));
                }
            }
        }
        let (ops, out_rows, ranks) = super::changes_in_order(deletes, updates, inserts);
        self.build(ops, out_rows, ranks)
    }

    /// The first partition column's watermark passes on at once (the operator emits as
    /// rows arrive); its groups behind it close at the next barrier.
    fn on_watermark(
        &mut self,
        ctx: &OperatorContext,
        _input: usize,
        column: usize,
        value: &ScalarValue,
    ) -> Result<Vec<Message>> {
        let Some(closing) = &mut self.closing else { return Ok(Vec::new()) };
        if column != self.node.group_by[0] {
            return Ok(Vec::new());
        }
        closing.watermark(ctx.snapshot.as_ref(), column, value)?;
        let column = self.node.output_column(self.visible, column);
        Ok(vec![Message::Watermark { column, value: value.clone() }])
    }

    /// Frees the groups behind the watermark: they are final (the view keeps their rows).
    fn on_barrier(&mut self, ctx: &OperatorContext, epoch: Epoch) -> Result<Vec<Chunk>> {
        let Some(closing) = &mut self.closing else { return Ok(Vec::new()) };
        if let Some((start, end)) = closing.range_to_close()? {
            let slots = self.groups.slots_in(&start, &end);
            self.groups.forget(&slots);
            closing.closed(start, end);
        }
        let reader = format!("TopN {} #{}", self.node.table, ctx.instance);
        closing.report_late(&ctx.view, &reader, epoch)?;
        Ok(Vec::new())
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) {
        self.groups.seal_rows_into(batch);
        if let Some(closing) = &mut self.closing {
            closing.checkpoint(batch, &[]);
        }
    }

    fn committed(&mut self) {
        self.groups.committed();
        self.groups.evict_if_over_budget();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::stream::operator::testing::{Harness, chunk, lines, pretty, run_script, schema};

    #[test]
    fn deleting_a_top_row_pulls_the_next_one_in() {
        let node = TopNNode {
            group_by: vec![],
            order_by: vec![(1, SortOptions { descending: true, nulls_first: false })],
            offset: 0,
            limit: 2,
            with_rank: false,
            table: 5,
            closes: false,
        };
        let s = schema("id:int v:int");
        let mut op = TopNOperator::new(
            &node,
            &[DataType::Int64, DataType::Int64],
            2,
            vec![0],
            s.clone(),
            Default::default(),
        )
        .unwrap();
        let mut h = Harness::new();
        let out = op.on_chunk(&h.ctx, 0, chunk(&s, "+ 1 10\n+ 2 30\n+ 3 20\n+ 4 .")).unwrap();
        assert_eq!(pretty(&out), lines("+ 2 30\n+ 3 20"));
        h.commit(&mut op);
        assert_eq!(pretty(&op.on_chunk(&h.ctx, 0, chunk(&s, "- 2 30")).unwrap()), lines("- 2 30\n+ 1 10"));
        // A row whose sort value changes leaves the window and re-enters it.
        assert_eq!(
            pretty(&op.on_chunk(&h.ctx, 0, chunk(&s, "U- 1 10\nU+ 1 40")).unwrap()),
            lines("- 1 10\n+ 1 40")
        );
        assert_eq!(pretty(&op.on_chunk(&h.ctx, 0, chunk(&s, "+ 5 25")).unwrap()), lines("- 3 20\n+ 5 25"));
    }

    #[test]
    fn a_group_larger_than_its_memory_reads_on_as_rows_leave() {
        // LIMIT 1: a group keeps 18 rows in memory when it is loaded.
        let node = TopNNode {
            group_by: vec![],
            order_by: vec![(1, SortOptions::default())],
            offset: 0,
            limit: 1,
            with_rank: false,
            table: 7,
            closes: false,
        };
        let s = schema("id:int v:int");
        let types = [DataType::Int64, DataType::Int64];
        let new = || TopNOperator::new(&node, &types, 2, vec![0], s.clone(), Default::default()).unwrap();
        let mut h = Harness::new();
        let mut op = new();
        let rows: String = (1..=40).map(|i| format!("+ {i} {i}\n")).collect();
        assert_eq!(pretty(&op.on_chunk(&h.ctx, 0, chunk(&s, &rows)).unwrap()), "+ 1 1");
        h.commit(&mut op);
        // A new instance (as after a restart) loads the group's first 18 rows only.
        let mut op = new();
        assert_eq!(pretty(&op.on_chunk(&h.ctx, 0, chunk(&s, "+ 100 100")).unwrap()), "");
        for i in 1..40 {
            let out = op.on_chunk(&h.ctx, 0, chunk(&s, &format!("- {i} {i}"))).unwrap();
            assert_eq!(pretty(&out), format!("- {i} {i}\n+ {} {}", i + 1, i + 1));
            if i % 7 == 0 {
                h.commit(&mut op);
            }
        }
        // Inserted after the rows in memory, read back when the others are gone.
        assert_eq!(pretty(&op.on_chunk(&h.ctx, 0, chunk(&s, "- 40 40")).unwrap()), "- 40 40\n+ 100 100");
        assert_eq!(pretty(&op.on_chunk(&h.ctx, 0, chunk(&s, "+ 50 50")).unwrap()), "- 100 100\n+ 50 50");
        h.commit(&mut op);
        let mut op = new();
        assert_eq!(pretty(&op.on_chunk(&h.ctx, 0, chunk(&s, "- 50 50")).unwrap()), "- 50 50\n+ 100 100");
    }

    #[test]
    fn per_group_row_numbers_shift() {
        let node = TopNNode {
            group_by: vec![0],
            order_by: vec![(1, SortOptions::default())],
            offset: 0,
            limit: 2,
            with_rank: true,
            table: 6,
            closes: false,
        };
        let s = schema("g:int v:int");
        let out_schema = Arc::new(Schema::new(vec![
            Field::new("g", DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
            Field::new("rn", DataType::UInt64, true),
        ]));
        let mut op = TopNOperator::new(
            &node,
            &[DataType::Int64, DataType::Int64],
            2,
            vec![1],
            out_schema,
            Default::default(),
        )
        .unwrap();
        let h = Harness::new();
        assert_eq!(
            pretty(&op.on_chunk(&h.ctx, 0, chunk(&s, "+ 1 5\n+ 1 7\n+ 2 1")).unwrap()),
            lines("+ 1 5 1\n+ 1 7 2\n+ 2 1 1")
        );
        let out = op.on_chunk(&h.ctx, 0, chunk(&s, "+ 1 3")).unwrap();
        assert_eq!(pretty(&out), lines("- 1 7 2\nU- 1 5 1\nU+ 1 5 2\n+ 1 3 1"));
    }

    /// A row of the window updated in a column the order does not read (Nexmark q6: the
    /// running maximum of an auction in its seller's last ten) shows its new values.
    #[test]
    fn rows_updated_in_place_show_their_new_values() {
        let node = TopNNode {
            group_by: vec![0],
            order_by: vec![(1, SortOptions::default())],
            offset: 0,
            limit: 2,
            with_rank: true,
            table: 106,
            closes: false,
        };
        let s = schema("g:int t:int v:int");
        let mut fields = ["g", "t", "v"].map(|n| Field::new(n, DataType::Int64, true)).to_vec();
        fields.push(Field::new("rn", DataType::UInt64, true));
        let out_schema = Arc::new(Schema::new(fields));
        let mut op =
            TopNOperator::new(&node, &vec![DataType::Int64; 3], 3, vec![1], out_schema, Default::default())
                .unwrap();
        let mut h = Harness::new();
        assert_eq!(
            pretty(&op.on_chunk(&h.ctx, 0, chunk(&s, "+ 1 10 5\n+ 1 20 6\n+ 1 30 7")).unwrap()),
            lines("+ 1 10 5 1\n+ 1 20 6 2")
        );
        h.commit(&mut op);
        let out = op.on_chunk(&h.ctx, 0, chunk(&s, "U- 1 20 6\nU+ 1 20 60\nU- 1 30 7\nU+ 1 30 70")).unwrap();
        assert_eq!(pretty(&out), lines("U- 1 20 6 2\nU+ 1 20 60 2"));
        // Moving up and changing at once: one update pair.
        let out = op.on_chunk(&h.ctx, 0, chunk(&s, "- 1 10 5")).unwrap();
        assert_eq!(pretty(&out), lines("- 1 10 5 1\nU- 1 20 60 2\nU+ 1 20 60 1\n+ 1 30 70 2"));
    }

    #[test]
    fn groups_behind_the_watermark_are_freed_and_their_late_rows_kept() {
        let node = TopNNode {
            group_by: vec![0],
            order_by: vec![(1, SortOptions { descending: true, nulls_first: false })],
            offset: 0,
            limit: 1,
            with_rank: true,
            table: 8,
            closes: true,
        };
        let s = schema("w:int v:int");
        let out_schema = Arc::new(Schema::new(vec![
            Field::new("w", DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
            Field::new("rn", DataType::UInt64, true),
        ]));
        let types = [DataType::Int64, DataType::Int64];
        let new = || {
            TopNOperator::new(&node, &types, 2, vec![0, 1], out_schema.clone(), Default::default()).unwrap()
        };
        let mut h = Harness::new();
        let mut op = new();
        let out = run_script(&mut op, &mut h, &s, "+ 10 5\n+ 10 7\n+ 20 1\nwatermark 0 20\nbarrier");
        assert_eq!(out, lines("+ 10 7 1\n+ 20 1 1\nwatermark 0 20"));
        // Group 10 is gone from the state table (the row of group 20 and the bound stay).
        assert_eq!(h.stored_keys(8), 2);
        // A restarted operator still knows group 10 is closed: its row is late.
        let mut op = new();
        let out = run_script(&mut op, &mut h, &s, "+ 10 9\n+ 20 3\nbarrier");
        assert_eq!(out, lines("- 20 1 1\n+ 20 3 1"));
        assert_eq!(h.stored_keys(crate::stream::source::DEAD_LETTERS_TABLE), 1);
    }
}
