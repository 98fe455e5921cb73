//! Materialize: keeps a view's rows in its state table, keyed by the view's stream key,
//! so that `SELECT` reads them like a table's and views on this view can backfill.
//!
//! Inserts (and the new half of an update) put the row under its key; deletes (and the old
//! half) remove the key. Ops are applied in order. Input from several parallel instances
//! arrives consolidated per epoch (deletes first), so a key moving between instances is
//! never inserted before its old version is deleted. Chunks pass on unchanged to the
//! actor's outlet (views defined on this view), and so do the watermarks of the view's
//! watermarked columns (plan revision 4). Its state table is the view's table id.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::common::ScalarValue;

use super::{Operator, OperatorContext};
use crate::catalog::{TableCodec, TableDesc};
use crate::common::Result;
use crate::common::row::RowCodec;
use crate::state::{StateTable, TableId, WriteBatch};
use crate::stream::message::{Chunk, Message, Op};

pub struct MaterializeOperator {
    desc: Arc<TableDesc>,
    rows: TableCodec,
    keys: Option<RowCodec>,
    state: StateTable,
}

impl MaterializeOperator {
    pub fn new(desc: Arc<TableDesc>) -> Result<Self> {
        let keys = if desc.primary_key.is_empty() { None } else { Some(RowCodec::new(&desc.key_types())?) };
        Ok(MaterializeOperator { rows: TableCodec::new(&desc)?, keys, state: StateTable::new(desc.id), desc })
    }
}

/// The key bytes of each row: empty for a relation of at most one row.
pub fn encode_keys(codec: Option<&RowCodec>, key_columns: &[ArrayRef], rows: usize) -> Result<Vec<Vec<u8>>> {
    match codec {
        None => Ok(vec![Vec::new(); rows]),
        Some(codec) => Ok(codec.encode(key_columns)?.iter().map(|r| r.data().to_vec()).collect()),
    }
}

impl Operator for MaterializeOperator {
    fn name(&self) -> &'static str {
        "Materialize"
    }

    fn state_tables(&self) -> Vec<TableId> {
        vec![self.desc.id]
    }

    fn on_chunk(&mut self, _ctx: &OperatorContext, _input: usize, chunk: Chunk) -> Result<Vec<Chunk>> {
        let key_columns: Vec<ArrayRef> =
            self.desc.primary_key.iter().map(|&i| chunk.data.column(i).clone()).collect();
        let keys = match &self.keys {
            Some(codec) => Some(codec.encode(&key_columns)?),
            None => None,
        };
        let key = |i: usize| keys.as_ref().map_or_else(Vec::new, |k| k.row(i).data().to_vec());
        let rows = self.rows.encode_rows(&chunk.data)?;
        for (i, op) in chunk.ops.iter().enumerate() {
            match op {
                Op::Insert | Op::UpdateInsert => self.state.put(key(i), rows.row(i).data().to_vec()),
                Op::Delete | Op::UpdateDelete => self.state.delete(key(i)),
            }
        }
        // Downstream views read this output under the view's own column names.
        let data = RecordBatch::try_new(self.desc.full_schema(), chunk.data.columns().to_vec())?;
        Ok(vec![Chunk::new(chunk.ops, data)])
    }

    /// Views over this one see the watermarks of its watermarked columns.
    fn on_watermark(
        &mut self,
        _ctx: &OperatorContext,
        _input: usize,
        column: usize,
        value: &ScalarValue,
    ) -> Result<Vec<Message>> {
        let passes = self.desc.view.as_ref().is_some_and(|v| v.watermark_columns.contains(&column));
        Ok(if passes { vec![Message::Watermark { column, value: value.clone() }] } else { Vec::new() })
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
    use super::*;
    use crate::catalog::ColumnDesc;
    use crate::common::SqlType;
    use crate::stream::operator::testing::{Harness, chunk, schema};

    #[test]
    fn keeps_the_latest_row_per_key_across_epochs() {
        let column = |name: &str| ColumnDesc {
            name: name.into(),
            sql_type: SqlType::Int64,
            nullable: true,
            default: None,
            hidden: false,
        };
        let desc = Arc::new(TableDesc {
            id: 2000,
            schema: "public".into(),
            name: "v".into(),
            columns: vec![column("k"), column("v")],
            primary_key: vec![0],
            view: None,
            connector: None,
            append_only: false,
            watermark: None,
            plain_view: None,
            checks: Vec::new(),
            key_constraint: None,
            uniques: Vec::new(),
        });
        let mut op = MaterializeOperator::new(desc.clone()).unwrap();
        let mut harness = Harness::new();
        let s = schema("k:int v:int");
        op.on_chunk(&harness.ctx, 0, chunk(&s, "+ 1 10\n+ 2 20\n- 2 20\n+ 2 21")).unwrap();
        harness.commit(&mut op);
        op.on_chunk(&harness.ctx, 0, chunk(&s, "U- 1 10\nU+ 1 11\n- 2 21")).unwrap();
        harness.commit(&mut op);
        let mut rows = Vec::new();
        harness
            .ctx
            .snapshot
            .scan(2000, &mut |_, v| {
                rows.push(v.to_vec());
                Ok(())
            })
            .unwrap();
        let batch = TableCodec::new(&desc).unwrap().decode_rows(rows.iter().map(|r| r.as_slice())).unwrap();
        assert_eq!(crate::stream::operator::testing::pretty(&[Chunk::inserts(batch)]), "+ 1 11");
    }
}
