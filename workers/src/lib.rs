//! vigil-workers (being built).
