pub mod oidc;
