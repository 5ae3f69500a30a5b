"""llmcourse: the code built in the course notebooks, promoted chapter by chapter.

Modules, in the order the course builds them:
    runtime    device and thread choice, seeding and the repository's data and cache folders
    bow        bag-of-words counts, TF-IDF and cosine similarity (chapter 1)
    ngram      n-gram language models with add-k, interpolated and Kneser-Ney smoothing (chapter 1)
    word2vec   skip-gram with negative sampling (chapter 1)
    rnn        RNN and LSTM language models (chapter 1)
    tokenizer  regex tokenizer, byte-level BPE, GPT-2's encoding (chapter 2)
    data       corpus loaders, sliding-window datasets and loaders (chapter 2)
    attention  multi-head attention: causal or bidirectional, self or cross (chapter 3)
    model      GPTConfig, the layers and GPTModel, with GPT-2's and today's options (chapters 4 and 5)
    encoder    a BERT-style encoder and the 2017 encoder-decoder, from the same blocks (chapter 4)
    generate   greedy and sampled decoding, with a key-value cache (chapters 4 and 5)
    download   fetching with deadlines and checksums, for the online extras (chapters 5 and 6)
    weights    loading GPT-2-layout state dicts into GPTModel (chapter 4)
    train      losses, evaluation, the training loop and the course's pretrained GPT (chapter 5)
    checkpoint crash-safe, checksummed checkpoints of a model, its optimizer and tokenizer (chapter 5)
    mlm        masked-LM masking, next-sentence pairs and the course's pretrained encoder (chapter 5)
    seq2seq    a transduction task, RNN encoder-decoders with and without attention, training (chapter 5)
    muon       the Muon optimizer and the Muon + AdamW pair of today's recipe (chapter 5)
    diagrams   drawn figures of the model's structure (chapters 3-5)
    finetune   classification heads, instruction records, collate and masking, exact match (chapter 6)
    lora       low-rank adaptation: LoRALinear, wrapping and merging (chapter 6)
"""

from llmcourse.runtime import use_recommended_threads

__version__ = "0.1.0"

# Leave one core to the rest of the machine (see runtime.recommended_threads); LLMCOURSE_THREADS overrides.
use_recommended_threads()
