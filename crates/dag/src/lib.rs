//! xlvlm-dag
