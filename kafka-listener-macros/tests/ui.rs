//! Compile-time behaviour of `#[kafka_listener]`: what compiles (`ui/pass`) and the exact error
//! for each mistake (`ui/fail`, one mistake per file, expected output in the `.stderr` files).
//! Regenerate the expected output with `TRYBUILD=overwrite`, then read every changed file.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    cases.compile_fail("tests/ui/fail/*.rs");
}
