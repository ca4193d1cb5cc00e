//! xlvlm-spec
