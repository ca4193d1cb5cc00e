//! xlvlm-store
