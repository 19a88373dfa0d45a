//! Procedural macros for `kafka-listener`. Use them through the `kafka_listener` crate.

use proc_macro::TokenStream;

/// Declares a Kafka listener (placeholder until the macro lands).
#[proc_macro_attribute]
pub fn kafka_listener(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
