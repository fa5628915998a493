//! Parsing arbitrary bytes as a GGUF file, reading its tensors, building a Llama model
//! and a tokenizer from it must never panic or allocate without bound: every failure is
//! a typed `ComputeError`.
#![no_main]

use std::io::Cursor;

use agentic_compute::llm::gguf::Gguf;
use agentic_compute::llm::llama::Llama;
use agentic_compute::llm::vocab;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = Cursor::new(data);
    let Ok(g) = Gguf::parse(&mut r) else {
        return;
    };
    for t in &g.tensors {
        let _ = g.read_tensor(&mut r, &t.name);
    }
    let _ = Llama::from_gguf(&g, &mut r);
    let _ = vocab::from_gguf(&g);
});
