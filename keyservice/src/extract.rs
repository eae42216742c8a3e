//! axum's extractors with [`AppError`] as the rejection, so malformed input gets the same JSON
//! error body as everything else instead of axum's plain-text one.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header};

use crate::error::AppError;

/// A JSON body, in UTF-8: axum's `Json` takes any `charset` parameter and then reads the bytes
/// as UTF-8 regardless, so a body declared in another charset is refused rather than misread.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    axum::Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(request: Request, state: &S) -> Result<Self, AppError> {
        if let Some(charset) = charset(request.headers())
            && !charset.eq_ignore_ascii_case("utf-8")
        {
            return Err(AppError::InvalidBody(
                "Content-Type charset must be utf-8 (or absent): JSON is UTF-8".into(),
            ));
        }
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        Ok(Self(value))
    }
}

/// The `charset` parameter of `Content-Type`, unquoted; `None` without one.
fn charset(headers: &HeaderMap) -> Option<&str> {
    let content_type = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    content_type.split(';').skip(1).find_map(|parameter| {
        let (name, value) = parameter.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("charset")
            .then(|| value.trim().trim_matches('"'))
    })
}

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(AppError))]
pub struct PathParam<T>(pub T);

#[derive(FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(AppError))]
pub struct QueryParams<T>(pub T);

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn the_charset_parameter_is_found_however_it_is_written() {
        let of = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_str(value).unwrap());
            charset(&headers).map(str::to_owned)
        };
        assert_eq!(of("application/json"), None);
        assert_eq!(
            of("application/json; charset=utf-8").as_deref(),
            Some("utf-8")
        );
        assert_eq!(
            of("application/json;CHARSET=\"UTF-16\"").as_deref(),
            Some("UTF-16")
        );
        assert_eq!(
            of("application/json; q=1; charset = latin1").as_deref(),
            Some("latin1")
        );
    }
}
