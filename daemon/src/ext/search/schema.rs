//! The GraphQL schema, built from `schema.graphql` (zot's types, fields, arguments and
//! nullability, in zot's order) as an async-graphql dynamic schema.
//!
//! Rules: the text is the contract; nothing here names a type or a field. Every `Query`
//! field resolves through [`super::resolve::query`], which answers with a JSON document
//! shaped like the field's type (PascalCase keys, as zot's); every other object field reads
//! its own key from its parent's document (a missing key is `null`), borrowing it: objects
//! are lent to their fields, and only leaves are converted to GraphQL values. `Time` is a string
//! scalar (RFC 3339, as gqlgen writes it).
use async_graphql::dynamic::{
    Enum, Field, FieldFuture, FieldValue, InputObject, InputValue, Object, Scalar, Schema,
    SchemaError, TypeRef,
};
use async_graphql::parser::types::{BaseType, Type, TypeKind, TypeSystemDefinition};
use async_graphql::Value;
use serde_json::Value as Json;

use super::limits;
use super::resolve;

/// zot's schema, field for field.
pub const SDL: &str = include_str!("schema.graphql");

fn type_ref(ty: &Type) -> TypeRef {
    let base = match &ty.base {
        BaseType::Named(name) => TypeRef::Named(name.to_string().into()),
        BaseType::List(inner) => TypeRef::List(Box::new(type_ref(inner))),
    };
    match ty.nullable {
        true => base,
        false => TypeRef::NonNull(Box::new(base)),
    }
}

/// A leaf of a document (a scalar, an enum, or a list of them) as GraphQL's value.
fn leaf(value: &Json) -> Option<FieldValue<'static>> {
    match value {
        Json::Null => None,
        other => Value::from_json(other.clone()).ok().map(FieldValue::value),
    }
}

/// An object-typed part of a document, lent to its own fields' resolvers (a list item by
/// item): no copy of the document is made at any level.
fn lent(value: &Json) -> Option<FieldValue<'_>> {
    match value {
        Json::Null => None,
        Json::Array(items) => Some(FieldValue::list(
            items
                .iter()
                .map(|item| lent(item).unwrap_or(FieldValue::NULL)),
        )),
        object => Some(FieldValue::borrowed_any(object)),
    }
}

/// A `Query` field's whole answer, owned by the field.
fn owned(value: Json) -> Option<FieldValue<'static>> {
    match value {
        Json::Null => None,
        Json::Array(items) => Some(FieldValue::list(
            items
                .into_iter()
                .map(|item| owned(item).unwrap_or(FieldValue::NULL)),
        )),
        Json::Object(_) => Some(FieldValue::owned_any(value)),
        other => leaf(&other),
    }
}

/// The field `name` of the parent's JSON document (a missing key or `null`: none).
fn member<'a>(parent: &'a FieldValue<'a>, name: &str, object: bool) -> Option<FieldValue<'a>> {
    let value = parent.downcast_ref::<Json>()?.get(name)?;
    match object {
        true => lent(value),
        false => leaf(value),
    }
}

/// The named type at the bottom of a field's type.
fn base_name(ty: &Type) -> String {
    match &ty.base {
        BaseType::Named(name) => name.to_string(),
        BaseType::List(inner) => base_name(inner),
    }
}

/// Builds the schema; fails only if `schema.graphql` is broken (a unit test builds it).
pub fn build() -> Result<Schema, SchemaError> {
    let document = async_graphql::parser::parse_schema(SDL)
        .map_err(|error| SchemaError(format!("schema.graphql: {error}")))?;
    let objects: std::collections::HashSet<String> = document
        .definitions
        .iter()
        .filter_map(|definition| match definition {
            TypeSystemDefinition::Type(ty) if matches!(ty.node.kind, TypeKind::Object(_)) => {
                Some(ty.node.name.node.to_string())
            }
            _ => None,
        })
        .collect();
    let mut builder = Schema::build("Query", None, None)
        .limit_depth(limits::MAX_DEPTH)
        .limit_complexity(limits::MAX_COMPLEXITY)
        .limit_recursive_depth(limits::MAX_DEPTH * 2);
    for definition in document.definitions {
        let TypeSystemDefinition::Type(definition) = definition else {
            continue;
        };
        let definition = definition.node;
        let type_name = definition.name.node.to_string();
        builder = match definition.kind {
            TypeKind::Scalar => builder.register(
                Scalar::new(type_name).validator(|value| matches!(value, Value::String(_))),
            ),
            TypeKind::Enum(kind) => builder.register(
                Enum::new(type_name).items(
                    kind.values
                        .iter()
                        .map(|value| value.node.value.node.to_string()),
                ),
            ),
            TypeKind::InputObject(kind) => {
                let mut object = InputObject::new(type_name);
                for field in kind.fields {
                    object = object.field(InputValue::new(
                        field.node.name.node.to_string(),
                        type_ref(&field.node.ty.node),
                    ));
                }
                builder.register(object)
            }
            TypeKind::Object(kind) => {
                let query = type_name == "Query";
                let mut object = Object::new(type_name);
                for field in kind.fields {
                    let field = field.node;
                    let name = field.name.node.to_string();
                    let ty = type_ref(&field.ty.node);
                    let lends = objects.contains(&base_name(&field.ty.node));
                    let mut built = match query {
                        true => Field::new(name.clone(), ty, move |ctx| {
                            let name = name.clone();
                            FieldFuture::new(async move {
                                Ok(owned(resolve::query(&name, &ctx).await?))
                            })
                        }),
                        false => Field::new(name.clone(), ty, move |ctx| {
                            FieldFuture::Value(member(ctx.parent_value, &name, lends))
                        }),
                    };
                    for argument in field.arguments {
                        built = built.argument(InputValue::new(
                            argument.node.name.node.to_string(),
                            type_ref(&argument.node.ty.node),
                        ));
                    }
                    object = object.field(built);
                }
                builder.register(object)
            }
            TypeKind::Interface(_) | TypeKind::Union(_) => {
                return Err(SchemaError(format!(
                    "schema.graphql: {type_name}: interfaces and unions are not used by zot"
                )))
            }
        };
    }
    builder.finish()
}
