// Example.cs: generate text with llamette from C#, as llama2.c's run.c does.
// SPDX-License-Identifier: MIT OR Apache-2.0
//
//   Example [MODEL] [-z TOKENIZER] [-i PROMPT] [-t TEMPERATURE] [-p TOP_P]
//           [-s SEED] [-n STEPS] [-j THREADS]
//
// The flags are bindings/c/example.c's (and run.c's): MODEL is a GGUF or
// llama2.c .bin file (memory-mapped); without it the model compiled into the
// library (stories260K) is used. -n counts every position, the prompt (with
// its BOS) included; 0 means the whole context. Ctrl+C stops the generation
// through a CancellationToken.
//
// Output: the prompt, the generated text and a newline (run.c prints one),
// as UTF-8 bytes on stdout, so that `Example -t 0 -n 256` prints exactly
// ../shared/testdata/stories260K.greedy.txt on every platform (no console
// code page, no "\r\n").
using System;
using System.Globalization;
using System.IO;
using System.Text;
using System.Threading;
using Llamette;

internal static class Example
{
    private static int Main(string[] args)
    {
        string modelPath = null, tokenizerPath = null, prompt = "";
        GenerateOptions options = new GenerateOptions();
        int steps = 256, threads = 1;
        for (int i = 0; i < args.Length; i++)
        {
            if (!args[i].StartsWith("-", StringComparison.Ordinal))
            {
                modelPath = args[i];
                continue;
            }
            if (i + 1 >= args.Length || args[i].Length != 2) return Usage();
            string v = args[++i];
            switch (args[i - 1][1])
            {
                case 'z': tokenizerPath = v; break;
                case 'i': prompt = v; break;
                case 't': options.Temperature = float.Parse(v, CultureInfo.InvariantCulture); break;
                case 'p': options.TopP = float.Parse(v, CultureInfo.InvariantCulture); break;
                case 's': options.Seed = ulong.Parse(v, CultureInfo.InvariantCulture); break;
                case 'n': steps = int.Parse(v, CultureInfo.InvariantCulture); break;
                case 'j': threads = int.Parse(v, CultureInfo.InvariantCulture); break;
                default: return Usage();
            }
        }

        Stream stdout = Console.OpenStandardOutput();
        try
        {
            using (LlamaModel model = modelPath == null ? LlamaModel.OpenDefault() : LlamaModel.FromFile(modelPath, tokenizerPath))
            {
                ModelInfo info = model.Info;
                if (steps <= 0 || steps > info.ContextLength) steps = info.ContextLength;
                SessionOptions sessionOptions = new SessionOptions { ContextLength = steps, Threads = threads };
                using (Session session = new Session(model, sessionOptions))
                using (CancellationTokenSource cts = new CancellationTokenSource())
                {
                    ConsoleCancelEventHandler onCtrlC = (sender, e) =>
                    {
                        e.Cancel = true; // keep the process: the generation stops instead
                        cts.Cancel();
                    };
                    Console.CancelKeyPress += onCtrlC;

                    // Echo the prompt as run.c does: its tokens' text, BOS first.
                    Write(stdout, model.Detokenize(model.Tokenize(prompt, true)));
                    int pieces = 0;
                    try
                    {
                        foreach (string piece in session.Generate(prompt, options, cts.Token))
                        {
                            Write(stdout, piece);
                            pieces++;
                        }
                    }
                    catch (OperationCanceledException)
                    {
                        Console.Error.WriteLine("Example: cancelled");
                    }
                    Console.CancelKeyPress -= onCtrlC;
                    Write(stdout, "\n");
                    Console.Error.WriteLine("Example: {0} pieces, {1} positions used, stopped by {2}",
                        pieces, session.Position, session.LastStopReason);
                }
            }
        }
        catch (LlametteException e)
        {
            Console.Error.WriteLine("Example: {0} [status {1}]", e.Message, e.Status);
            return 1;
        }
        return 0;
    }

    private static void Write(Stream s, string text)
    {
        byte[] b = Encoding.UTF8.GetBytes(text);
        s.Write(b, 0, b.Length);
        s.Flush();
    }

    private static int Usage()
    {
        Console.Error.WriteLine("usage: Example [MODEL] [-z TOKENIZER] [-i PROMPT] [-t TEMPERATURE] [-p TOP_P]");
        Console.Error.WriteLine("               [-s SEED] [-n STEPS] [-j THREADS]");
        return 2;
    }
}
