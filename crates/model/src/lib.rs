//! xlvlm-model
