//! `connector = 'blackhole'`: a sink that discards every change (to measure a query's
//! cost without a consumer's). It takes no options.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;

use super::Options;
use crate::common::Result;
use crate::state::Epoch;
use crate::stream::sink::{Publish, Sink, SinkConnector};

pub fn build(_options: &mut Options, _name: &str) -> Result<Arc<dyn SinkConnector>> {
    Ok(Arc::new(Blackhole))
}

struct Blackhole;

impl SinkConnector for Blackhole {
    fn open(&self, _sealed: Option<Epoch>) -> Result<Box<dyn Sink>> {
        Ok(Box::new(Blackhole))
    }
}

impl Sink for Blackhole {
    fn write(&mut self, _data: &RecordBatch) -> Result<()> {
        Ok(())
    }

    fn seal(&mut self, _epoch: Epoch) -> Result<Option<Publish>> {
        Ok(None)
    }
}
