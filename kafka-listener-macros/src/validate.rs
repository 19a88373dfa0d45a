//! Checking the listener function's shape: an `async fn` whose arguments are extractors.

use proc_macro2::TokenStream;
use quote::ToTokens;
use syn::{FnArg, GenericArgument, Pat, PathArguments, ReturnType, Signature, Type, TypeReference};

use crate::attr::Errors;

/// One argument of the listener function.
pub(crate) struct Argument<'a> {
    /// What is extracted from each record: the argument's type, or the `E` of a batch
    /// listener's `Vec<E>`.
    pub(crate) extracted: &'a Type,
    /// A batch listener's batch-level argument (`Acknowledgment`): extracted once per batch
    /// through `FromBatch`, not per record.
    pub(crate) whole: bool,
}

/// Checks the signature and returns the arguments it could make sense of, with every error.
pub(crate) fn check(sig: &Signature, batch: bool) -> (Vec<Argument<'_>>, Errors) {
    let mut errors = Errors::default();
    if let Some(token) = &sig.constness {
        errors.push(syn::Error::new_spanned(
            token,
            "a #[kafka_listener] function cannot be `const`",
        ));
    }
    if let Some(token) = &sig.unsafety {
        errors.push(syn::Error::new_spanned(
            token,
            "a #[kafka_listener] function cannot be `unsafe`: the runtime calls it for every record",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(syn::Error::new_spanned(
            abi,
            "a #[kafka_listener] function cannot have an `extern` ABI",
        ));
    }
    if sig.asyncness.is_none() {
        errors.push(syn::Error::new_spanned(
            sig.fn_token,
            "#[kafka_listener] requires an async fn: write `async fn`",
        ));
    }
    if !sig.generics.params.is_empty() {
        errors.push(syn::Error::new_spanned(
            &sig.generics,
            "a #[kafka_listener] function cannot be generic: it is registered once, with \
             concrete argument types",
        ));
    }
    if let Some(where_clause) = &sig.generics.where_clause {
        errors.push(syn::Error::new_spanned(
            where_clause,
            "a #[kafka_listener] function cannot have a `where` clause: it is registered once, \
             with concrete argument types",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(syn::Error::new_spanned(
            variadic,
            "a #[kafka_listener] function cannot be variadic",
        ));
    }
    if let ReturnType::Type(_, ty) = &sig.output {
        if let Type::ImplTrait(_) = &**ty {
            errors.push(syn::Error::new_spanned(
                ty,
                "a #[kafka_listener] function returns `()` or `Result<(), E>`, not `impl Trait`",
            ));
        }
    }

    let mut arguments = Vec::with_capacity(sig.inputs.len());
    for input in &sig.inputs {
        match input {
            FnArg::Receiver(receiver) => errors.push(syn::Error::new_spanned(
                receiver,
                "#[kafka_listener] goes on a free async fn, not a method: a listener has no \
                 `self`; move it out of the `impl` block",
            )),
            FnArg::Typed(typed) => {
                if let Err(error) = check_pattern(&typed.pat) {
                    errors.push(error);
                }
                match check_type(&typed.ty, batch) {
                    Ok((extracted, whole)) => arguments.push(Argument { extracted, whole }),
                    Err(error) => errors.push(error),
                }
            }
        }
    }
    (arguments, errors)
}

fn check_pattern(pat: &Pat) -> syn::Result<()> {
    match pat {
        Pat::Ident(ident) if ident.by_ref.is_none() && ident.subpat.is_none() => Ok(()),
        Pat::Wild(_) => Ok(()),
        _ => Err(syn::Error::new_spanned(
            pat,
            "a listener argument is a plain name (`order: Json<Order>`, `mut order`, or `_`); \
             destructure it in the body",
        )),
    }
}

/// Returns the type to extract from each record, or (`true`) once per batch.
fn check_type(ty: &Type, batch: bool) -> syn::Result<(&Type, bool)> {
    check_owned(ty)?;
    match (batch, vec_element(ty)) {
        (true, Some(element)) => {
            check_owned(element)?;
            Ok((element, false))
        }
        // Batch-level extractors (`Acknowledgment`); anything else fails the `FromBatch` bound,
        // whose message lists what works.
        (true, None) => Ok((ty, true)),
        (false, Some(element)) if !is_u8(element) => Err(syn::Error::new_spanned(
            ty,
            format!(
                "a record listener is called once per record, so it cannot take `{}`; \
                 add `batch` to receive a poll's records together: \
                 #[kafka_listener(batch, topics = ...)]",
                render(ty)
            ),
        )),
        (false, _) => Ok((ty, false)),
    }
}

/// Extractors produce owned values; references and `impl Trait` cannot be produced.
fn check_owned(ty: &Type) -> syn::Result<()> {
    match ungroup(ty) {
        Type::Reference(reference) => Err(syn::Error::new(
            reference.and_token.span,
            format!(
                "extractor arguments are owned values; take `{}` instead of `{}`",
                owned_alternative(reference),
                render(ty)
            ),
        )),
        Type::ImplTrait(_) => Err(syn::Error::new_spanned(
            ty,
            "extractor arguments need a concrete type, not `impl Trait`",
        )),
        _ => Ok(()),
    }
}

fn owned_alternative(reference: &TypeReference) -> String {
    match ungroup(&reference.elem) {
        Type::Path(path) if path.path.is_ident("str") => "String".to_owned(),
        Type::Slice(slice) => format!("Vec<{}>", render(&slice.elem)),
        elem => render(elem),
    }
}

/// `E` if `ty` is `Vec<E>` (by name: the check runs before types are known).
fn vec_element(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ungroup(ty) else {
        return None;
    };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != "Vec" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.iter().collect::<Vec<_>>()[..] {
        [GenericArgument::Type(element)] => Some(element),
        _ => None,
    }
}

fn is_u8(ty: &Type) -> bool {
    matches!(ungroup(ty), Type::Path(path) if path.qself.is_none() && path.path.is_ident("u8"))
}

fn ungroup(mut ty: &Type) -> &Type {
    loop {
        match ty {
            Type::Group(group) => ty = &group.elem,
            Type::Paren(paren) => ty = &paren.elem,
            _ => return ty,
        }
    }
}

/// A type as a user would write it (`Vec<Json<Order>>`, not `Vec < Json < Order > >`).
pub(crate) fn render(ty: &Type) -> String {
    let tokens: TokenStream = ty.to_token_stream();
    let text = tokens.to_string();
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' ' {
            let previous = out.chars().last();
            let next = chars.peek().copied();
            let glue = matches!(previous, Some('<' | '&' | ':' | '('))
                || matches!(next, Some('<' | '>' | ',' | ':' | ')'));
            if !glue {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(tokens: TokenStream) -> Signature {
        syn::parse2(tokens).expect("test signature parses")
    }

    fn messages(errors: Errors) -> String {
        match errors.into_result() {
            Ok(()) => String::new(),
            Err(error) => error
                .into_iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }

    #[test]
    fn render_glues_punctuation_like_rustfmt() {
        let ty: Type = syn::parse_quote!(std::vec::Vec<Json<Option<(u8, String)>>>);
        assert_eq!(render(&ty), "std::vec::Vec<Json<Option<(u8, String)>>>");
        let ty: Type = syn::parse_quote!(&'a mut [u8]);
        assert_eq!(render(&ty), "&'a mut [u8]");
    }

    #[test]
    fn record_listener_accepts_extractors_and_raw_bytes() {
        let s = sig(quote::quote!(async fn f(a: Json<T>, mut b: Vec<u8>, _: RecordMeta)));
        let (arguments, errors) = check(&s, false);
        assert_eq!(messages(errors), "");
        assert_eq!(arguments.len(), 3);
    }

    #[test]
    fn batch_listener_extracts_vec_elements() {
        let s = sig(quote::quote!(async fn f(a: Vec<Json<T>>, b: Vec<RecordMeta>)));
        let (arguments, errors) = check(&s, true);
        assert_eq!(messages(errors), "");
        assert_eq!(render(arguments[0].extracted), "Json<T>");
        assert_eq!(render(arguments[1].extracted), "RecordMeta");
    }

    #[test]
    fn references_suggest_the_owned_type() {
        let s = sig(quote::quote!(async fn f(a: &str, b: &[u8], c: &'a Headers)));
        let text = messages(check(&s, false).1);
        assert!(text.contains("take `String` instead of `&str`"), "{text}");
        assert!(text.contains("take `Vec<u8>` instead of `&[u8]`"), "{text}");
        assert!(
            text.contains("take `Headers` instead of `&'a Headers`"),
            "{text}"
        );
    }

    #[test]
    fn every_shape_error_is_reported() {
        let s = sig(quote::quote!(fn f<T>(&self, (a, b): (u8, u8), c: Vec<String>)));
        let text = messages(check(&s, false).1);
        for expected in [
            "requires an async fn",
            "cannot be generic",
            "no `self`",
            "plain name",
            "add `batch`",
        ] {
            assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
        }
    }
}
