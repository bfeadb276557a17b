//! vigil-api (being built).
