//! xlvlm-data
