//! Top-N: ORDER BY ... LIMIT n OFFSET m, and per-group top-N (ROW_NUMBER() OVER
//! (PARTITION BY ... ORDER BY ...) <= n), which also outputs the row number.
//!
//! Keeps every input row in a state table keyed by (group, sort key, stream key), so a
//! group's rows are read in output order. For each group a chunk touches it reads the
//! group's visible window (rows m+1 .. m+n) before and after applying the chunk and emits
//! the difference: rows that left the window are deleted, rows that entered are inserted,
//! and rows whose row number changed are updated. Deletes of rows inside the window pull
//! the next row in from state. Barriers only seal state.

use std::collections::HashMap;

use datafusion::arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions};
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::ScalarValue;

use super::{Operator, OperatorContext};
use crate::common::Result;
use crate::common::row::RowCodec;
use crate::plan::TopNNode;
use crate::state::{StateTable, TableId, WriteBatch, prefix_end};
use crate::stream::message::{Chunk, Op};

pub struct TopNOperator {
    node: TopNNode,
    /// Input columns shown before the row number.
    visible: usize,
    /// Encodes (group, sort key, stream key).
    converter: RowConverter,
    group_codec: Option<RowCodec>,
    rows: RowCodec,
    stream_key: Vec<usize>,
    state: StateTable,
    schema: SchemaRef,
}

/// A row in a group's window: its state key and encoded row.
type Entry = (Vec<u8>, Vec<u8>);

impl TopNOperator {
    pub fn new(
        node: &TopNNode,
        input_types: &[DataType],
        visible: usize,
        stream_key: Vec<usize>,
        schema: SchemaRef,
    ) -> Result<Self> {
        let mut fields: Vec<SortField> =
            node.group_by.iter().map(|&i| SortField::new(input_types[i].clone())).collect();
        fields.extend(
            node.order_by.iter().map(|(i, o)| SortField::new_with_options(input_types[*i].clone(), *o)),
        );
        fields.extend(
            stream_key
                .iter()
                .map(|&i| SortField::new_with_options(input_types[i].clone(), SortOptions::default())),
        );
        let group_types: Vec<DataType> = node.group_by.iter().map(|&i| input_types[i].clone()).collect();
        Ok(TopNOperator {
            converter: RowConverter::new(fields)?,
            group_codec: if group_types.is_empty() { None } else { Some(RowCodec::new(&group_types)?) },
            rows: RowCodec::new(input_types)?,
            state: StateTable::new(node.table),
            node: node.clone(),
            visible,
            stream_key,
            schema,
        })
    }

    fn window(&self, ctx: &OperatorContext, group: &[u8]) -> Result<Vec<Entry>> {
        let wanted = self.node.offset + self.node.limit;
        let mut entries = Vec::with_capacity(wanted.min(1024));
        let end = prefix_end(group);
        self.state.scan_range(ctx.snapshot.as_ref(), group, end.as_deref(), &mut |k, v| {
            entries.push((k.to_vec(), v.to_vec()));
            Ok(entries.len() < wanted)
        })?;
        Ok(entries.into_iter().skip(self.node.offset).collect())
    }

    fn build(&self, ops: Vec<Op>, rows: Vec<Vec<u8>>, ranks: Vec<u64>) -> Result<Vec<Chunk>> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let decoded = self.rows.decode(rows.iter().map(|r| r.as_slice()))?;
        let mut columns: Vec<ArrayRef> = decoded[..self.visible].to_vec();
        if self.node.with_rank {
            let rank_type = self.schema.field(self.visible).data_type().clone();
            let values = ranks.iter().map(|r| ScalarValue::UInt64(Some(*r)).cast_to(&rank_type));
            columns.push(ScalarValue::iter_to_array(values.collect::<std::result::Result<Vec<_>, _>>()?)?);
        }
        columns.extend(decoded[self.visible..].iter().cloned());
        let options = RecordBatchOptions::new().with_row_count(Some(ops.len()));
        let data = RecordBatch::try_new_with_options(self.schema.clone(), columns, &options)?;
        Ok(vec![Chunk::new(ops, data)])
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
        let mut columns: Vec<ArrayRef> =
            self.node.group_by.iter().map(|&i| chunk.data.column(i).clone()).collect();
        let groups = super::materialize::encode_keys(self.group_codec.as_ref(), &columns, chunk.len())?;
        columns.extend(self.node.order_by.iter().map(|(i, _)| chunk.data.column(*i).clone()));
        columns.extend(self.stream_key.iter().map(|&i| chunk.data.column(i).clone()));
        let keys = self.converter.convert_columns(&columns)?;
        let rows = self.rows.encode(chunk.data.columns())?;

        let (mut deletes, mut updates, mut inserts) = (Vec::new(), Vec::new(), Vec::new());
        for (group, group_rows) in super::rows_by_key(&groups) {
            let before = self.window(ctx, group)?;
            for &row in &group_rows {
                let key = keys.row(row).data().to_vec();
                if Chunk::is_insert(chunk.ops[row]) {
                    self.state.put(key, rows.row(row).data().to_vec());
                } else {
                    self.state.delete(key);
                }
            }
            let after = self.window(ctx, group)?;
            let rank_before: HashMap<&[u8], usize> =
                before.iter().enumerate().map(|(i, e)| (e.0.as_slice(), i)).collect();
            let rank_after: HashMap<&[u8], usize> =
                after.iter().enumerate().map(|(i, e)| (e.0.as_slice(), i)).collect();
            for (i, (key, row)) in before.iter().enumerate() {
                match rank_after.get(key.as_slice()) {
                    None => deletes.push((row.clone(), i as u64 + 1)),
                    Some(&j) if j != i && self.node.with_rank => {
                        updates.push((row.clone(), i as u64 + 1, j as u64 + 1))
                    }
                    Some(_) => {}
                }
            }
            for (j, (key, row)) in after.iter().enumerate() {
                if !rank_before.contains_key(key.as_slice()) {
                    inserts.push((row.clone(), j as u64 + 1));
                }
            }
        }
        // Deletes first: a row whose sort key changed leaves and re-enters under one key.
        let (mut ops, mut out_rows, mut ranks) = (Vec::new(), Vec::new(), Vec::new());
        for (row, rank) in deletes {
            ops.push(Op::Delete);
            out_rows.push(row);
            ranks.push(rank);
        }
        for (row, old, new) in updates {
            ops.extend([Op::UpdateDelete, Op::UpdateInsert]);
            out_rows.extend([row.clone(), row]);
            ranks.extend([old, new]);
        }
        for (row, rank) in inserts {
            ops.push(Op::Insert);
            out_rows.push(row);
            ranks.push(rank);
        }
        self.build(ops, out_rows, ranks)
    }

    fn checkpoint(&mut self, batch: &mut WriteBatch) {
        self.state.seal_into(batch);
    }

    fn committed(&mut self) {
        self.state.committed();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;
    use crate::stream::operator::testing::{Harness, chunk, lines, pretty, schema};

    #[test]
    fn deleting_a_top_row_pulls_the_next_one_in() {
        let node = TopNNode {
            group_by: vec![],
            order_by: vec![(1, SortOptions { descending: true, nulls_first: false })],
            offset: 0,
            limit: 2,
            with_rank: false,
            table: 5,
        };
        let s = schema("id:int v:int");
        let mut op =
            TopNOperator::new(&node, &[DataType::Int64, DataType::Int64], 2, vec![0], s.clone()).unwrap();
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
    fn per_group_row_numbers_shift() {
        let node = TopNNode {
            group_by: vec![0],
            order_by: vec![(1, SortOptions::default())],
            offset: 0,
            limit: 2,
            with_rank: true,
            table: 6,
        };
        let s = schema("g:int v:int");
        let out_schema = Arc::new(Schema::new(vec![
            Field::new("g", DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
            Field::new("rn", DataType::UInt64, true),
        ]));
        let mut op =
            TopNOperator::new(&node, &[DataType::Int64, DataType::Int64], 2, vec![1], out_schema).unwrap();
        let h = Harness::new();
        assert_eq!(
            pretty(&op.on_chunk(&h.ctx, 0, chunk(&s, "+ 1 5\n+ 1 7\n+ 2 1")).unwrap()),
            lines("+ 1 5 1\n+ 1 7 2\n+ 2 1 1")
        );
        let out = op.on_chunk(&h.ctx, 0, chunk(&s, "+ 1 3")).unwrap();
        assert_eq!(pretty(&out), lines("- 1 7 2\nU- 1 5 1\nU+ 1 5 2\n+ 1 3 1"));
    }
}
