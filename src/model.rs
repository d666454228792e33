//! tilgang's Cedar model as the code names it: the entity type names the
//! schema must declare, and [`uid`] to build an entity uid of one of them. Its
//! own module so the engine, the loader and the store share it without
//! depending on each other.

use std::str::FromStr;

use cedar_policy::{EntityId, EntityTypeName, EntityUid};

/// Cedar type names tilgang's code relies on. The schema must declare them.
pub const ORG_TYPE: &str = "Tilgang::Organization";
pub const PERSON_TYPE: &str = "Tilgang::Person";
pub const RIGHT_TYPE: &str = "Tilgang::Right";
pub const SCOPE_TYPE: &str = "Tilgang::Scope";
pub const DELEGATION_TYPE: &str = "Tilgang::Delegation";
pub const ACTION_TYPE: &str = "Tilgang::Action";

/// The uid of a Cedar entity of one of tilgang's types (the `*_TYPE` constants).
#[allow(clippy::expect_used)] // only called with the constants above, checked by tests
pub fn uid(ty: &'static str, id: &str) -> EntityUid {
    let ty = EntityTypeName::from_str(ty).expect("tilgang's Cedar type names parse");
    EntityUid::from_type_name_and_id(ty, EntityId::new(id))
}

/// The entity types the schema must declare: every `*_TYPE` above but the
/// actions'.
pub const ENTITY_TYPES: [&str; 5] = [
    ORG_TYPE,
    PERSON_TYPE,
    RIGHT_TYPE,
    SCOPE_TYPE,
    DELEGATION_TYPE,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_parse() {
        for ty in ENTITY_TYPES.into_iter().chain([ACTION_TYPE]) {
            assert_eq!(uid(ty, "x").type_name().to_string(), ty);
        }
    }
}
