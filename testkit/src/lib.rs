//! vigil-testkit (being built).
