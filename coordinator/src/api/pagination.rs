//! `maxResults` and `nextToken` as AWS checks them (features.md §3).

use crate::state::ApiError;

/// AWS's default page size, used when `maxResults` is 0.
pub const DEFAULT_MAX_RESULTS: usize = 100;
/// AWS's largest page.
pub const MAX_RESULTS: i32 = 1000;

/// The page size for `maxResults`: 0 means the default; negative or above 1000 is refused.
pub fn page_size(max_results: i32) -> Result<usize, ApiError> {
    match max_results {
        0 => Ok(DEFAULT_MAX_RESULTS),
        1..=MAX_RESULTS => Ok(max_results as usize),
        _ => Err(ApiError::validation(
            "maxResults",
            format!("1 validation error detected: Value '{max_results}' at 'maxResults' failed to satisfy constraint: Member must have value between 0 and 1000"),
        )),
    }
}

/// Tokens are `<kind>:<position>`; the kind keeps a token from one listing out of another.
pub fn encode_token(kind: &str, position: u64) -> String {
    format!("{kind}:{position}")
}

/// The position in `token` (None for an empty token, the first page).
pub fn decode_token(kind: &str, token: &str) -> Result<Option<u64>, ApiError> {
    if token.is_empty() {
        return Ok(None);
    }
    token
        .strip_prefix(kind)
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|position| position.parse().ok())
        .map(Some)
        .ok_or_else(|| ApiError::InvalidToken {
            field: "nextToken".into(),
            message: format!("Invalid Token: '{token}'"),
        })
}

/// One page of `items` from position `skip` on, with the token of the next page (empty after
/// the last): the listings that page by position.
pub fn page<T>(items: Vec<T>, kind: &str, skip: usize, limit: usize) -> (impl Iterator<Item = T>, String) {
    let next_token = if items.len() > skip + limit { encode_token(kind, (skip + limit) as u64) } else { String::new() };
    (items.into_iter().skip(skip).take(limit), next_token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_sizes_and_tokens() {
        assert_eq!(page_size(0).unwrap(), 100);
        assert_eq!(page_size(1000).unwrap(), 1000);
        assert_eq!(page_size(1001).unwrap_err().field(), Some("maxResults"));
        assert_eq!(page_size(-1).unwrap_err().exception_name(), "ValidationException");
        assert_eq!(decode_token("e", &encode_token("e", 42)).unwrap(), Some(42));
        assert_eq!(decode_token("e", "").unwrap(), None);
        assert_eq!(decode_token("e", "h:3").unwrap_err().exception_name(), "InvalidToken");
        let (first, next) = page((1..=5).collect(), "x", 0, 2);
        assert_eq!((first.collect::<Vec<_>>(), next.as_str()), (vec![1, 2], "x:2"));
        let (last, next) = page((1..=5).collect(), "x", 4, 2);
        assert_eq!((last.collect::<Vec<_>>(), next.as_str()), (vec![5], ""));
    }
}
