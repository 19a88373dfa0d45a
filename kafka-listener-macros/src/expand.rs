//! Generating the registration: an erased handler plus an `inventory` submission, next to the
//! user's function (which is emitted unchanged).

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned, ToTokens};
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{Attribute, Signature, Type, Visibility};

use crate::attr::{self, ListenerArgs};
use crate::validate::{self, Argument};

/// The function under the attribute. The body is kept as raw tokens, so a syntax error inside
/// it is reported by rustc as usual rather than hiding the listener (tokio's approach).
struct ListenerFn {
    attrs: Vec<Attribute>,
    vis: Visibility,
    sig: Signature,
    body: TokenTree,
}

impl Parse for ListenerFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let body: TokenTree = input.parse()?;
        match &body {
            TokenTree::Group(group) if group.delimiter() == proc_macro2::Delimiter::Brace => {}
            _ => return Err(syn::Error::new_spanned(&body, "expected the function body")),
        }
        if !input.is_empty() {
            return Err(input.error("unexpected tokens after the function body"));
        }
        Ok(ListenerFn {
            attrs,
            vis,
            sig,
            body,
        })
    }
}

impl ToTokens for ListenerFn {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        for attr in &self.attrs {
            attr.to_tokens(tokens);
        }
        self.vis.to_tokens(tokens);
        self.sig.to_tokens(tokens);
        self.body.to_tokens(tokens);
    }
}

/// The whole macro: parse, check, generate. On any error the function is still emitted as
/// written, so the user sees only the real error and the IDE keeps working.
pub(crate) fn kafka_listener(attr: TokenStream, item: TokenStream) -> TokenStream {
    let func: ListenerFn = match syn::parse2(item.clone()) {
        Ok(func) => func,
        Err(_) => {
            let error = syn::Error::new(
                Span::call_site(),
                "#[kafka_listener] goes on an async fn: `async fn on_order(order: Json<Order>) { ... }`",
            )
            .to_compile_error();
            return quote!(#item #error);
        }
    };
    let (args, mut errors) = attr::parse(attr);
    let (arguments, shape_errors) = validate::check(&func.sig, args.batch);
    errors.extend(shape_errors);
    if args.send_to.is_some() {
        for a in &arguments {
            let last = match a.extracted {
                Type::Path(p) => p.path.segments.last().map(|s| s.ident.to_string()),
                _ => None,
            };
            if last.as_deref() == Some("Acknowledgment") {
                errors.push(syn::Error::new_spanned(
                    a.extracted,
                    "a `send_to` listener is acknowledged by its forwards (once the broker acknowledged them); remove the Acknowledgment argument",
                ));
            }
        }
    }
    match errors.into_result() {
        Ok(()) => {
            let registration = registration(&args, &func.sig, &arguments);
            quote!(#func #registration)
        }
        Err(error) => {
            let error = error.to_compile_error();
            quote!(#func #error)
        }
    }
}

/// Name of the erased handler inside the `const _` block; unusual enough not to shadow the
/// user's function, which the handler calls by name.
fn handler_ident() -> syn::Ident {
    format_ident!("__kafka_listener_handler")
}

fn registration(args: &ListenerArgs, sig: &Signature, arguments: &[Argument<'_>]) -> TokenStream {
    let handler = if args.batch {
        batch_handler(sig, arguments)
    } else {
        record_handler(sig, arguments, args.send_to.as_deref())
    };
    let handler_ident = handler_ident();
    let variant = if args.batch {
        quote!(Batch)
    } else {
        quote!(Record)
    };
    let fn_name = sig.ident.unraw().to_string();
    let id = args.id.clone().unwrap_or_else(|| fn_name.clone());
    let topics = &args.topics;
    let properties = &args.properties;
    let group_id = optional(args.group_id.as_deref());
    let concurrency = optional(args.concurrency.as_deref());
    let concurrency_per_partition = optional(args.concurrency_per_partition.as_deref());
    let ack_mode = optional(args.ack_mode.as_deref());
    let auto_startup = optional(args.auto_startup.as_deref());
    let client_id_prefix = optional(args.client_id_prefix.as_deref());
    let topic_pattern = optional(args.topic_pattern.as_deref());
    let partitions = &args.partitions;
    let rebalance_listener = match &args.rebalance_listener {
        Some(path) => quote_spanned! {path.span()=>
            ::core::option::Option::Some(&#path as &'static dyn ::kafka_listener::__private::RebalanceListener)
        },
        None => quote!(::core::option::Option::None),
    };
    let send_to = optional(args.send_to.as_deref());
    let settings = args.settings.iter().map(|(k, v)| quote!((#k, #v)));
    let (payload_type, payload_schema) = payload(arguments);
    let location_suffix = format!("::{fn_name}");
    quote! {
        const _: () = {
            #handler

            #payload_schema

            ::kafka_listener::__private::inventory::submit! {
                // Built field by field from `new` (a const fn): the definition is
                // `#[non_exhaustive]`, so it can grow without breaking this expansion.
                {
                    let mut d = ::kafka_listener::__private::ListenerDefinition::new(
                        #id,
                        &[#(#topics),*],
                        ::kafka_listener::__private::Handler::#variant(#handler_ident),
                    );
                    d.group_id = #group_id;
                    d.concurrency = #concurrency;
                    d.concurrency_per_partition = #concurrency_per_partition;
                    d.ack_mode = #ack_mode;
                    d.auto_startup = #auto_startup;
                    d.properties = &[#(#properties),*];
                    d.client_id_prefix = #client_id_prefix;
                    d.topic_pattern = #topic_pattern;
                    d.partitions = &[#(#partitions),*];
                    d.rebalance_listener = #rebalance_listener;
                    d.send_to = #send_to;
                    d.settings = &[#(#settings),*];
                    d.location = ::core::concat!(::core::module_path!(), #location_suffix);
                    d.payload_type = #payload_type;
                    d.payload_schema = ::core::option::Option::Some(__kafka_listener_payload_schema);
                    d
                }
            }
        };
    }
}

/// The record's payload as the listener takes it (`Json<T>`, `String`, bytes; for a batch
/// listener the element of its `Vec`): its type as written, and a function giving its JSON
/// Schema when the type implements `schemars::JsonSchema` (chosen by autoref: no bound on the
/// user's type).
fn payload(arguments: &[Argument<'_>]) -> (TokenStream, TokenStream) {
    let last_segment = |ty: &Type| match ty {
        Type::Path(p) => p.path.segments.last().cloned(),
        _ => None,
    };
    let found = arguments.iter().find_map(|a| {
        let seg = last_segment(a.extracted)?;
        match seg.ident.to_string().as_str() {
            "Json" => match &seg.arguments {
                syn::PathArguments::AngleBracketed(g) => g.args.iter().find_map(|arg| match arg {
                    syn::GenericArgument::Type(t) => Some((a.extracted, t.clone())),
                    _ => None,
                }),
                _ => None,
            },
            "String" => Some((a.extracted, syn::parse_quote!(::std::string::String))),
            _ => None,
        }
    });
    match found {
        Some((written, inner)) => {
            let written = validate::render(written);
            (
                quote!(::core::option::Option::Some(#written)),
                quote! {
                    fn __kafka_listener_payload_schema()
                        -> ::core::option::Option<::kafka_listener::__private::serde_json::Value>
                    {
                        #[allow(unused_imports)]
                        use ::kafka_listener::__private::{NoSchema as _, ViaSchemars as _};
                        (&::kafka_listener::__private::SchemaProbe::<#inner>::new()).payload_schema()
                    }
                },
            )
        }
        None => (
            quote!(::core::option::Option::None),
            quote! {
                fn __kafka_listener_payload_schema()
                    -> ::core::option::Option<::kafka_listener::__private::serde_json::Value>
                {
                    ::core::option::Option::None
                }
            },
        ),
    }
}

fn optional(value: Option<&str>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}

/// `<Ret as IntoHandlerResult>::into_handler_result(f(args).await)`, with the return type's own
/// tokens in the qualified path so an unsupported return type is reported on it.
fn call_user_fn(sig: &Signature, values: &[syn::Ident]) -> TokenStream {
    let fn_name = &sig.ident;
    let (ret, span) = match &sig.output {
        syn::ReturnType::Default => (quote!(()), sig.ident.span()),
        syn::ReturnType::Type(_, ty) => (ty.to_token_stream(), ty.span()),
    };
    quote_spanned! {span=>
        <#ret as ::kafka_listener::__private::IntoHandlerResult>::into_handler_result(
            #fn_name(#(#values),*).await
        )
    }
}

/// Boxes the call (the caller coerces it to `HandlerFuture`); spanned at the function's name so
/// that a future that is not `Send` is reported against the listener.
fn boxed_future(sig: &Signature, call: TokenStream) -> TokenStream {
    quote_spanned! {sig.ident.span()=>
        ::std::boxed::Box::pin(async move { #call })
    }
}

/// `<E as FromRecord>::from_record(record, cx)`, spanned at the argument's type so a type that
/// is not an extractor is reported there (with `FromRecord`'s list of extractors).
fn extract(ty: &Type, record: &syn::Ident) -> TokenStream {
    quote_spanned! {ty.span()=>
        <#ty as ::kafka_listener::__private::FromRecord>::from_record(#record, __cx)
    }
}

/// A `send_to` handler's call: the return value becomes the forwards, sent and acknowledged
/// before the call ends (`Forwarder::forward`).
fn call_and_forward(sig: &Signature, values: &[syn::Ident]) -> TokenStream {
    let fn_name = &sig.ident;
    let (ret, span) = match &sig.output {
        syn::ReturnType::Default => (quote!(()), sig.ident.span()),
        syn::ReturnType::Type(_, ty) => (ty.to_token_stream(), ty.span()),
    };
    let result = quote_spanned! {span=>
        <#ret as ::kafka_listener::__private::IntoForwardResult>::into_forward_result(
            #fn_name(#(#values),*).await
        )
    };
    quote! { __forwarder.forward(#result).await }
}

fn record_handler(
    sig: &Signature,
    arguments: &[Argument<'_>],
    send_to: Option<&str>,
) -> TokenStream {
    let handler_ident = handler_ident();
    let record = format_ident!("__record");
    let values: Vec<_> = (0..arguments.len())
        .map(|i| format_ident!("__arg{}", i))
        .collect();
    let extracts = arguments.iter().map(|a| extract(a.extracted, &record));
    let (forwarder, call) = match send_to {
        Some(topic) => (
            quote! {
                let __forwarder =
                    ::kafka_listener::__private::Forwarder::new(#record, __cx, #topic)?;
            },
            call_and_forward(sig, &values),
        ),
        None => (quote!(), call_user_fn(sig, &values)),
    };
    let future = boxed_future(sig, call);
    quote! {
        fn #handler_ident(
            #record: &::kafka_listener::__private::ConsumerRecord,
            __cx: &::kafka_listener::__private::ListenerContext,
        ) -> ::core::result::Result<
            ::kafka_listener::__private::HandlerFuture,
            ::kafka_listener::__private::ExtractError,
        > {
            #( let #values = #extracts?; )*
            #forwarder
            ::core::result::Result::Ok(#future)
        }
    }
}

fn batch_handler(sig: &Signature, arguments: &[Argument<'_>]) -> TokenStream {
    let handler_ident = handler_ident();
    let record = format_ident!("__record");
    let per_record: Vec<&Argument<'_>> = arguments.iter().filter(|a| !a.whole).collect();
    let vectors: Vec<_> = (0..per_record.len())
        .map(|i| format_ident!("__vec{}", i))
        .collect();
    let items: Vec<_> = (0..per_record.len())
        .map(|i| format_ident!("__item{}", i))
        .collect();
    let element_types: Vec<_> = per_record.iter().map(|a| a.extracted).collect();
    let extracts = per_record.iter().map(|a| extract(a.extracted, &record));
    // The call's arguments in declaration order: a vector, or a batch-level value.
    let mut next_vector = vectors.iter();
    let mut wholes = Vec::new();
    let values: Vec<syn::Ident> = arguments
        .iter()
        .enumerate()
        .map(|(i, a)| {
            if a.whole {
                let ident = format_ident!("__whole{}", i);
                let ty = a.extracted;
                wholes.push(quote_spanned! {ty.span()=>
                    let #ident = <#ty as ::kafka_listener::__private::FromBatch>::from_batch(
                        __records, &__accepted, __cx,
                    );
                });
                ident
            } else {
                next_vector
                    .next()
                    .cloned()
                    .unwrap_or_else(|| format_ident!("__missing"))
            }
        })
        .collect();
    let future = boxed_future(sig, call_user_fn(sig, &values));
    quote! {
        fn #handler_ident(
            __records: &[::kafka_listener::__private::ConsumerRecord],
            __cx: &::kafka_listener::__private::ListenerContext,
        ) -> ::kafka_listener::__private::BatchInvocation {
            #(
                let mut #vectors: ::std::vec::Vec<#element_types> =
                    ::std::vec::Vec::with_capacity(__records.len());
            )*
            let mut __rejected = ::std::vec::Vec::new();
            let mut __accepted: ::std::vec::Vec<usize> = ::std::vec::Vec::with_capacity(__records.len());
            // Every argument is extracted before any is pushed, so that a record is either in
            // all vectors or rejected, and the vectors stay aligned.
            fn __extract_all(
                #record: &::kafka_listener::__private::ConsumerRecord,
                __cx: &::kafka_listener::__private::ListenerContext,
            ) -> ::core::result::Result<( #( #element_types, )* ), ::kafka_listener::__private::ExtractError> {
                ::core::result::Result::Ok(( #( #extracts?, )* ))
            }
            for (__index, __record) in __records.iter().enumerate() {
                match __extract_all(__record, __cx) {
                    ::core::result::Result::Ok(( #( #items, )* )) => {
                        #( #vectors.push(#items); )*
                        __accepted.push(__index);
                    }
                    ::core::result::Result::Err(__error) => __rejected.push((__index, __error)),
                }
            }
            #( #wholes )*
            let __future: ::core::option::Option<::kafka_listener::__private::HandlerFuture> =
                if __accepted.is_empty() {
                ::core::option::Option::None
            } else {
                ::core::option::Option::Some(#future)
            };
            ::kafka_listener::__private::BatchInvocation {
                future: __future,
                rejected: __rejected,
            }
        }
    }
}
