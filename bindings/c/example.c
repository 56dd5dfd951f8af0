/*
 * example.c: generate text with llamette from C11, as llama2.c's run.c does.
 *
 *   example [MODEL] [-z TOKENIZER] [-i PROMPT] [-t TEMPERATURE] [-p TOP_P]
 *           [-s SEED] [-n STEPS] [-j THREADS]
 *
 * MODEL is a GGUF or llama2.c .bin file (memory-mapped); without it the model
 * compiled into the library (stories260K) is used. A llama2.c model needs its
 * tokenizer.bin with -z. The flags mean what they mean for run.c: -n counts
 * every position, the prompt (with its BOS) included; 0 means the whole
 * context. The seed defaults to 0 (a fixed constant), not the time.
 *
 * Output: the prompt, then the generated text, then a newline, on stdout.
 * The library's text stream has no final newline; this program prints one
 * because run.c does, so that `example -t 0 -n 256` prints exactly
 * ../shared/testdata/stories260K.greedy.txt. (run.c writes raw token pieces
 * and drops the bytes of characters encoded as byte tokens; llamette's text
 * is whole UTF-8 characters. The two agree on ASCII text such as
 * TinyStories.)
 *
 * Build: cc -std=c11 example.c $(pkg-config --cflags --libs llamette)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <fcntl.h>
#include <io.h>
#endif

#include "llamette.h"

/* Prints the message of a failed call and exits. */
static void check(llamette_status st, const char *what) {
    if (st != LLAMETTE_STATUS_OK) {
        fprintf(stderr, "example: %s: %s (%s)\n", what, llamette_last_error(),
                llamette_status_str(st));
        exit(1);
    }
}

static bool print_token(void *user_data, uint32_t token, const char *text, size_t len) {
    (void)user_data;
    (void)token;
    fwrite(text, 1, len, stdout);
    fflush(stdout);
    return true;
}

static void usage(void) {
    fprintf(stderr,
            "usage: example [MODEL] [-z TOKENIZER] [-i PROMPT] [-t TEMPERATURE] [-p TOP_P]\n"
            "               [-s SEED] [-n STEPS] [-j THREADS]\n");
    exit(2);
}

int main(int argc, char **argv) {
#ifdef _WIN32
    _setmode(_fileno(stdout), _O_BINARY); /* the text's bytes, no \r added */
#endif
    const char *model_path = NULL, *tokenizer_path = NULL, *prompt = "";
    /* Every struct starts with its size; the _INIT macros set it (and the
     * defaults: llama2.c's sampler settings here). */
    llamette_sampler_params sp = LLAMETTE_SAMPLER_PARAMS_INIT;
    unsigned long steps = 256, threads = 1;
    for (int i = 1; i < argc; i++) {
        if (argv[i][0] != '-') {
            model_path = argv[i];
            continue;
        }
        if (i + 1 >= argc || argv[i][2] != '\0') usage();
        const char *v = argv[++i];
        switch (argv[i - 1][1]) {
        case 'z': tokenizer_path = v; break;
        case 'i': prompt = v; break;
        case 't': sp.temperature = strtof(v, NULL); break;
        case 'p': sp.top_p = strtof(v, NULL); break;
        case 's': sp.seed = strtoull(v, NULL, 10); break;
        case 'n': steps = strtoul(v, NULL, 10); break;
        case 'j': threads = strtoul(v, NULL, 10); break;
        default: usage();
        }
    }

    llamette_model *model = NULL;
    if (model_path)
        check(llamette_model_open_file(model_path, tokenizer_path, &model), model_path);
    else
        check(llamette_model_open_default(&model), "embedded model");
    llamette_model_info info = LLAMETTE_MODEL_INFO_INIT;
    check(llamette_model_get_info(model, &info), "model info");
    if (steps == 0 || steps > info.context_length) steps = info.context_length;

    /* The prompt, BOS first: ask for the size, then encode. */
    size_t n_prompt = 0;
    llamette_status st = llamette_model_tokenize(model, prompt, strlen(prompt), true, NULL, 0,
                                                 &n_prompt);
    if (st != LLAMETTE_STATUS_BUFFER_TOO_SMALL) check(st, "tokenize");
    uint32_t *tokens = malloc(n_prompt * sizeof *tokens);
    if (!tokens) return 1;
    check(llamette_model_tokenize(model, prompt, strlen(prompt), true, tokens, n_prompt,
                                  &n_prompt),
          "tokenize");
    if (n_prompt > steps) n_prompt = steps;

    /* A session sized for `steps` positions, in memory it allocates. */
    llamette_session_params params = LLAMETTE_SESSION_PARAMS_INIT;
    params.context_length = (uint32_t)steps;
    llamette_session *session = NULL;
    check(llamette_session_new(model, &params, &session), "session");
    check(llamette_session_set_threads(session, (uint32_t)threads), "threads");

    /* Echo the prompt as run.c does, through a streaming decoder. */
    llamette_decoder *decoder = NULL;
    check(llamette_decoder_new(model, &decoder), "decoder");
    char *text = malloc(info.max_token_text_bytes + 1);
    if (!text) return 1;
    for (size_t i = 0; i < n_prompt; i++) {
        size_t len = 0;
        check(llamette_decoder_push(decoder, tokens[i], text, info.max_token_text_bytes, &len),
              "decode");
        fwrite(text, 1, len, stdout);
    }

    check(llamette_session_prefill(session, tokens, n_prompt), "prefill");
    llamette_generate_result result = LLAMETTE_GENERATE_RESULT_INIT;
    check(llamette_session_generate(session, &sp, 0, print_token, NULL, &result), "generate");
    printf("\n");
    fprintf(stderr, "example: %u tokens generated, stopped by %s\n", result.n_tokens,
            result.stop_reason == LLAMETTE_STOP_END_TOKEN      ? "an end token"
            : result.stop_reason == LLAMETTE_STOP_CONTEXT_FULL ? "the end of the context"
                                                               : "the callback");

    free(text);
    free(tokens);
    llamette_decoder_free(decoder);
    llamette_session_free(session);
    llamette_model_free(model);
    return 0;
}
