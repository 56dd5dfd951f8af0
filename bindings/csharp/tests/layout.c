/*
 * layout.c: prints the size of every struct of llamette.h and the offset and
 * size of each field, one per line ("struct.field OFFSET SIZE", "struct SIZE"),
 * for LlametteTests.StructLayoutsMatchTheHeader to compare with the C#
 * mirrors (Marshal.OffsetOf / Marshal.SizeOf).
 */
#include <stddef.h>
#include <stdio.h>

#include "llamette.h"

#define S(s) printf("%s %zu\n", #s, sizeof(s))
#define F(s, f) printf("%s.%s %zu %zu\n", #s, #f, offsetof(s, f), sizeof(((s *)0)->f))

int main(void) {
    S(llamette_model_info);
    F(llamette_model_info, struct_size);
    F(llamette_model_info, format);
    F(llamette_model_info, dim);
    F(llamette_model_info, hidden_dim);
    F(llamette_model_info, n_layers);
    F(llamette_model_info, n_heads);
    F(llamette_model_info, n_kv_heads);
    F(llamette_model_info, head_dim);
    F(llamette_model_info, vocab_size);
    F(llamette_model_info, context_length);
    F(llamette_model_info, tokenizer_tokens);
    F(llamette_model_info, bos_token);
    F(llamette_model_info, eos_token);
    F(llamette_model_info, unk_token);
    F(llamette_model_info, max_token_text_bytes);
    F(llamette_model_info, n_params);
    F(llamette_model_info, weight_bytes);
    F(llamette_model_info, file_bytes);
    F(llamette_model_info, tokenizer_file_bytes);
    F(llamette_model_info, bytes_per_token);
    F(llamette_model_info, rms_eps);
    F(llamette_model_info, rope_theta);
    F(llamette_model_info, owned_bytes);
    F(llamette_model_info, interleaved_matrices);
    S(llamette_session_params);
    F(llamette_session_params, struct_size);
    F(llamette_session_params, context_length);
    F(llamette_session_params, kv_type);
    F(llamette_session_params, batch);
    S(llamette_sampler_params);
    F(llamette_sampler_params, struct_size);
    F(llamette_sampler_params, temperature);
    F(llamette_sampler_params, top_k);
    F(llamette_sampler_params, top_p);
    F(llamette_sampler_params, min_p);
    F(llamette_sampler_params, repeat_penalty);
    F(llamette_sampler_params, repeat_last_n);
    F(llamette_sampler_params, seed);
    S(llamette_step_result);
    F(llamette_step_result, struct_size);
    F(llamette_step_result, token);
    F(llamette_step_result, is_end);
    F(llamette_step_result, text);
    F(llamette_step_result, text_len);
    S(llamette_generate_result);
    F(llamette_generate_result, struct_size);
    F(llamette_generate_result, n_tokens);
    F(llamette_generate_result, stop_reason);
    S(llamette_parallel);
    F(llamette_parallel, struct_size);
    F(llamette_parallel, user_data);
    F(llamette_parallel, n_threads);
    F(llamette_parallel, parallel_for);
    S(llamette_chat_message);
    F(llamette_chat_message, struct_size);
    F(llamette_chat_message, role);
    F(llamette_chat_message, content);
    F(llamette_chat_message, content_len);
    S(llamette_chat_options);
    F(llamette_chat_options, struct_size);
    F(llamette_chat_options, flags);
    F(llamette_chat_options, context_policy);
    F(llamette_chat_options, reserve);
    S(llamette_chat_prefill_result);
    F(llamette_chat_prefill_result, struct_size);
    F(llamette_chat_prefill_result, reused);
    F(llamette_chat_prefill_result, fed);
    F(llamette_chat_prefill_result, dropped);
    F(llamette_chat_prefill_result, format);
    S(llamette_generate_options);
    F(llamette_generate_options, struct_size);
    F(llamette_generate_options, max_tokens);
    F(llamette_generate_options, flags);
    F(llamette_generate_options, stop_strings);
    F(llamette_generate_options, stop_strings_len);
    return 0;
}
