//! Paging of the API's lists: `?limit=&offset=`, with a default and a maximum.
//!
//! Owns [`PageQuery`] (the query string of a list endpoint), [`Page`] (a checked window)
//! and [`Page::answer`] (the answer `{"as_of", KEY: [...], "total", "limit", "offset"}`).
//! Guarantees: no list answer holds more than [`MAX_LIMIT`] items; `total` is the length
//! of the whole list, so a client can fetch the rest; a bad value (not a number, a limit
//! above the maximum, an unknown parameter) is a JSON 400 naming the parameter.
//!
//! Reuse: an endpoint with only these parameters takes `Params<PageQuery>`; one with more
//! declares its own query struct with `limit` and `offset` fields and calls [`Page::new`].

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::error::BadRequest;

/// Items in a page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: usize = 1000;

/// The query string of a list endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Items to return (0 returns only the total).
    pub limit: Option<usize>,
    /// Items to skip.
    pub offset: Option<usize>,
    /// `group` (default) or `local` (SPEC §8.8).
    pub scope: Option<super::group::Scope>,
}

impl PageQuery {
    /// The checked window.
    pub fn page(&self) -> Result<Page, BadRequest> {
        Page::new(self.limit, self.offset)
    }
}

/// A checked window of a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    /// At most [`MAX_LIMIT`].
    pub limit: usize,
    /// Any offset (beyond the end gives an empty page).
    pub offset: usize,
}

impl Page {
    /// Checks `limit` (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) and `offset`
    /// (default 0).
    pub fn new(limit: Option<usize>, offset: Option<usize>) -> Result<Page, BadRequest> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if limit > MAX_LIMIT {
            return Err(BadRequest(format!(
                "limit: {limit} is above the maximum {MAX_LIMIT}"
            )));
        }
        Ok(Page {
            limit,
            offset: offset.unwrap_or(0),
        })
    }

    /// The items of `list` in this window.
    pub fn slice<'a, T>(&self, list: &'a [T]) -> &'a [T] {
        let start = self.offset.min(list.len());
        let end = start.saturating_add(self.limit).min(list.len());
        &list[start..end]
    }

    /// `{"total", "limit", "offset"}`, to merge into an answer.
    pub fn meta(&self, total: usize) -> Value {
        json!({ "total": total, "limit": self.limit, "offset": self.offset })
    }

    /// The answer `{"as_of", key: [this page of list], "total", "limit", "offset"}`.
    pub fn answer<T: Serialize>(&self, as_of: Option<String>, key: &str, list: &[T]) -> Response {
        let mut body = self.meta(list.len());
        body["as_of"] = json!(as_of);
        body[key] = json!(self.slice(list));
        Json(body).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_clamped_to_the_list() {
        let list: Vec<u32> = (0..10).collect();
        let p = Page::new(Some(3), Some(8)).unwrap();
        assert_eq!(p.slice(&list), &[8, 9]);
        let p = Page::new(None, Some(usize::MAX)).unwrap();
        assert!(p.slice(&list).is_empty());
        let p = Page::new(Some(0), None).unwrap();
        assert!(p.slice(&list).is_empty());
        assert_eq!(Page::new(None, None).unwrap().limit, DEFAULT_LIMIT);
        assert!(Page::new(Some(MAX_LIMIT + 1), None).is_err());
        assert_eq!(p.meta(10)["total"], 10);
    }
}
