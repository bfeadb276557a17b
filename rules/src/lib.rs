//! vigil-rules (being built).
