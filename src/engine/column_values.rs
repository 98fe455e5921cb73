//! Values checked against their column's type as a row is written: `varchar(n)` and
//! `char(n)` lengths, `jsonb` texts, and the same for the elements of arrays of them.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListArray};
use datafusion::arrow::datatypes::DataType;

use crate::common::{Error, Result, SqlState, SqlType};

/// `array`, a column of type `sql_type`, as stored: text cut to its length limit where
/// what is over is spaces; 22001 for a longer value, 22P02 for text that is not JSON.
pub(super) fn fit(array: &ArrayRef, sql_type: &SqlType, column: &str) -> Result<ArrayRef> {
    match sql_type {
        SqlType::Jsonb => {
            check_json(array.as_ref(), column)?;
            Ok(array.clone())
        }
        SqlType::Array(element) => {
            let Some(lists) = array.as_list_opt::<i32>() else { return Ok(array.clone()) };
            let items = fit(lists.values(), element, column)?;
            if Arc::ptr_eq(&items, lists.values()) {
                return Ok(array.clone());
            }
            let DataType::List(field) = lists.data_type() else { return Ok(array.clone()) };
            Ok(Arc::new(ListArray::try_new(
                field.clone(),
                lists.offsets().clone(),
                items,
                lists.nulls().cloned(),
            )?))
        }
        other => match other.max_characters() {
            Some(limit) => fit_length(array, limit, other),
            None => Ok(array.clone()),
        },
    }
}

/// A text column's values within `limit` characters: as Postgres stores `varchar(n)` and
/// `char(n)`, a longer value fails with 22001 unless what is over the limit is spaces,
/// which are cut.
fn fit_length(array: &ArrayRef, limit: u32, sql_type: &SqlType) -> Result<ArrayRef> {
    let Some(strings) = array.as_string_opt::<i32>() else { return Ok(array.clone()) };
    let limit = limit as usize;
    // A value of at most `limit` bytes has at most `limit` characters.
    let over = |s: &str| s.len() > limit && s.chars().nth(limit).is_some();
    if !strings.iter().flatten().any(over) {
        return Ok(array.clone());
    }
    let mut fitted =
        datafusion::arrow::array::StringBuilder::with_capacity(strings.len(), strings.value_data().len());
    for value in strings.iter() {
        match value {
            Some(s) if over(s) => {
                let (cut, _) = s.char_indices().nth(limit).expect("over the limit");
                if !s[cut..].bytes().all(|b| b == b' ') {
                    return Err(Error::new(
                        SqlState::StringDataRightTruncation,
                        format!("value too long for type {}", sql_type.name()),
                    ));
                }
                fitted.append_value(&s[..cut]);
            }
            other => fitted.append_option(other),
        }
    }
    Ok(Arc::new(fitted.finish()))
}

fn check_json(array: &dyn Array, column: &str) -> Result<()> {
    let Some(strings) = array.as_string_opt::<i32>() else { return Ok(()) };
    for value in strings.iter().flatten() {
        if let Err(e) = serde_json::from_str::<serde_json::Value>(value) {
            return Err(Error::new(
                SqlState::InvalidTextRepresentation,
                "invalid input syntax for type json",
            )
            .with_detail(format!("column \"{column}\": {e}")));
        }
    }
    Ok(())
}
