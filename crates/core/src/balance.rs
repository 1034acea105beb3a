//! Choosing a server for a request. (skeleton: to be written)
