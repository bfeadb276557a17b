//! vigil: the composition root.
