//! xlvlm-processor
