//! zot's GraphQL transport as gqlgen serves it: `GET ?query=&variables=&operationName=` (a
//! GET's body is ignored: zli sends the document there too), `POST` with a JSON body
//! `{query, variables, operationName}`.
//!
//! Status codes as gqlgen's: a request it cannot decode is 400 (`variables could not be
//! decoded`, `json request body could not be decoded: ...`, `transport not supported`); a
//! document that does not parse or validate is 422 with `data: null`; anything that ran is
//! 200, resolver errors included (`data: null` and the error with its `path`).
use serde_json::{json, Map, Value};

use super::limits::{MAX_BODY_BYTES, MAX_QUERY_BYTES};

/// A decoded GraphQL request.
#[derive(Debug, Default, PartialEq)]
pub struct GraphqlRequest {
    pub query: String,
    pub variables: Option<Value>,
    pub operation_name: Option<String>,
}

/// An answer: HTTP status and JSON body (serialized: `data` keeps the selection's order).
#[derive(Debug, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    fn json(status: u16, body: &Value) -> Answer {
        Answer {
            status,
            body: body.to_string().into_bytes(),
        }
    }
}

pub fn error_answer(status: u16, message: &str) -> Answer {
    Answer::json(
        status,
        &json!({"errors": [{"message": message}], "data": null}),
    )
}

/// A GET: everything from the query string.
pub fn from_get(raw_query: Option<&str>) -> Result<GraphqlRequest, Answer> {
    let mut request = GraphqlRequest::default();
    for (key, value) in form_urlencoded::parse(raw_query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "query" => request.query = value.into_owned(),
            "operationName" if !value.is_empty() => {
                request.operation_name = Some(value.into_owned())
            }
            "variables" if !value.is_empty() => {
                let variables = serde_json::from_str::<Value>(&value)
                    .map_err(|_| error_answer(400, "variables could not be decoded"))?;
                request.variables = Some(variables);
            }
            _ => {}
        }
    }
    Ok(request)
}

/// A POST: a JSON body, `Content-Type: application/json` (parameters allowed).
pub fn from_post(content_type: Option<&str>, body: &[u8]) -> Result<GraphqlRequest, Answer> {
    let media_type = content_type
        .and_then(|value| value.split(';').next())
        .map(|value| value.trim().to_ascii_lowercase());
    if media_type.as_deref() != Some("application/json") {
        return Err(error_answer(400, "transport not supported"));
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(error_answer(413, "request body too large"));
    }
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Posted {
        #[serde(default)]
        query: String,
        #[serde(default)]
        variables: Option<Value>,
        #[serde(default)]
        operation_name: Option<String>,
    }
    let posted: Posted = serde_json::from_slice(body).map_err(|error| {
        let message = format!(
            "json request body could not be decoded: {error} body:{}",
            String::from_utf8_lossy(&body[..body.len().min(256)])
        );
        error_answer(400, &message)
    })?;
    Ok(GraphqlRequest {
        query: posted.query,
        variables: posted.variables.filter(|v| !v.is_null()),
        operation_name: posted.operation_name.filter(|name| !name.is_empty()),
    })
}

/// The checks before execution that answer 422 like a validation failure.
pub fn precheck(request: &GraphqlRequest) -> Result<(), Answer> {
    let failed = |message: String| {
        let body = json!({"errors": [{"message": message, "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}], "data": null});
        Answer::json(422, &body)
    };
    if request.query.trim().is_empty() {
        return Err(failed("no operation provided".into()));
    }
    if request.query.len() > MAX_QUERY_BYTES {
        return Err(failed(format!(
            "the query is {} bytes; the limit is {MAX_QUERY_BYTES}",
            request.query.len()
        )));
    }
    Ok(())
}

/// The JSON answer of an executed request, with gqlgen's status rule: errors before
/// execution (parse, validation, limits) are 422, anything that ran is 200. `failed` names
/// the `Query` fields whose resolvers failed, in order: their errors get that `path`
/// (async-graphql's dynamic resolvers leave it empty).
pub fn answer(response: async_graphql::Response, failed: &[String]) -> Answer {
    let mut failed = failed.iter();
    let ran = !failed.as_slice().is_empty() || response.errors.iter().any(|e| !e.path.is_empty());
    let errors: Vec<Value> = response
        .errors
        .iter()
        .map(|error| {
            let mut object = Map::new();
            object.insert("message".into(), Value::String(error.message.clone()));
            let mut path: Vec<Value> = error
                .path
                .iter()
                .map(|segment| match segment {
                    async_graphql::PathSegment::Field(name) => Value::String(name.clone()),
                    async_graphql::PathSegment::Index(index) => json!(index),
                })
                .collect();
            if path.is_empty() && ran {
                if let Some(field) = failed.next() {
                    path.push(Value::String(field.clone()));
                }
            }
            if !path.is_empty() {
                object.insert("path".into(), Value::Array(path));
            }
            // gqlgen's presenter gives a resolver error its path and no locations.
            let resolver_error = object.contains_key("path");
            if !error.locations.is_empty() && !resolver_error {
                let locations: Vec<Value> = error
                    .locations
                    .iter()
                    .map(|pos| json!({"line": pos.line, "column": pos.column}))
                    .collect();
                object.insert("locations".into(), Value::Array(locations));
            }
            Value::Object(object)
        })
        .collect();
    #[derive(serde::Serialize)]
    struct Body<'a> {
        #[serde(skip_serializing_if = "Vec::is_empty")]
        errors: Vec<Value>,
        data: &'a async_graphql::Value,
    }
    let status = match (errors.is_empty(), ran) {
        (false, false) => 422,
        _ => 200,
    };
    let body = Body {
        errors,
        data: &response.data,
    };
    Answer {
        status,
        body: serde_json::to_vec(&body).expect("a GraphQL response serializes"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_reads_the_query_string_only() {
        let request = from_get(Some(
            "query={ImageList(repo:\"a\"){Page{TotalCount}}}&variables=%7B%22x%22%3A1%7D",
        ))
        .unwrap();
        assert_eq!(request.query, "{ImageList(repo:\"a\"){Page{TotalCount}}}");
        assert_eq!(request.variables, Some(json!({"x": 1})));
        let zli = from_get(Some("query=%7B+ImageList%28repo%3A%22a%22%29+%7D")).unwrap();
        assert_eq!(zli.query, "{ ImageList(repo:\"a\") }");
        assert_eq!(
            from_get(Some("query=x&variables={")).unwrap_err().status,
            400
        );
    }

    #[test]
    fn post_needs_json() {
        let body = br#"{"query":"{a}","variables":null,"operationName":""}"#;
        let request = from_post(Some("application/json; charset=utf-8"), body).unwrap();
        assert_eq!(
            (
                request.query.as_str(),
                request.variables,
                request.operation_name
            ),
            ("{a}", None, None)
        );
        assert_eq!(
            from_post(Some("application/graphql"), body)
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            from_post(Some("application/json"), b"not json")
                .unwrap_err()
                .status,
            400
        );
        assert_eq!(
            precheck(&GraphqlRequest::default()).unwrap_err().status,
            422
        );
    }
}
