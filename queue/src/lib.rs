//! vigil-queue (being built).
