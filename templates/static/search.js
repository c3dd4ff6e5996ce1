// The search box of every page. search/index.json (written by publisher/search.py) names
// the Pagefind bundles: a base and newer segments. Each is searched; a page's result is
// kept only from the bundle holding its newest copy, and never for a deleted page.
const root = new URL("../", import.meta.url);
const LIMIT = 10;
const form = document.querySelector("form[data-search]");
if (form) start(form);

function start(form) {
  const input = form.querySelector("input[type=search]");
  const output = form.querySelector("[data-search-results]");
  let ready = null;
  let latest = 0;
  let timer = 0;
  form.hidden = false;
  const run = async () => {
    const term = input.value.trim();
    const mine = ++latest;
    if (!term) {
      output.replaceChildren();
      return;
    }
    ready ??= load();
    let found;
    try {
      found = await search(await ready, term);
    } catch (error) {
      ready = null; // try again with the next keystroke
      if (mine === latest) output.replaceChildren(note("Search is not available right now."));
      console.warn("search:", error);
      return;
    }
    if (mine === latest) show(output, found, term);
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    clearTimeout(timer);
    run();
  });
  input.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(run, 150);
  });
  input.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      input.value = "";
      output.replaceChildren();
    }
  });
  input.addEventListener("focus", () => (ready ??= load()), { once: true });
}

async function load() {
  const response = await fetch(new URL("search/index.json", root), { cache: "no-cache" });
  if (!response.ok) throw new Error(`search/index.json: HTTP ${response.status}`);
  const manifest = await response.json();
  const bundles = await Promise.all(
    manifest.bundles.map(async (name) => {
      // one module per bundle URL: each import is its own Pagefind instance
      const pagefind = await import(new URL(`search/${name}pagefind.js`, root).href);
      await pagefind.options({ baseUrl: root.pathname });
      await pagefind.init();
      return { name, pagefind };
    }),
  );
  return {
    bundles,
    base: manifest.bundles[0],
    holder: new Map(Object.entries(manifest.holder || {})),
    gone: new Set(manifest.gone || []),
  };
}

async function search(index, term) {
  const lists = await Promise.all(
    index.bundles.map(async ({ name, pagefind }) => {
      const found = await pagefind.search(term);
      const top = found.results.slice(0, LIMIT * 2);
      const data = await Promise.all(top.map((r) => r.data()));
      return data.map((d, i) => ({ bundle: name, score: top[i].score, data: d }));
    }),
  );
  const seen = new Set();
  return lists
    .flat()
    .filter(({ bundle, data }) => {
      const page = data.url.slice(root.pathname.length).split(/[?#]/)[0];
      const newest = index.holder.get(page) ?? index.base;
      if (index.gone.has(page) || newest !== bundle || seen.has(page)) return false;
      seen.add(page);
      return true;
    })
    .sort((a, b) => b.score - a.score)
    .slice(0, LIMIT);
}

function show(output, found, term) {
  if (!found.length) {
    output.replaceChildren(note(`No articles match “${term}”.`));
    return;
  }
  const list = document.createElement("ol");
  for (const { data } of found) {
    const item = document.createElement("li");
    const link = document.createElement("a");
    link.href = data.url;
    link.textContent = data.meta?.title || data.url;
    link.className = "search-result";
    item.append(link, excerpt(data.excerpt || ""));
    list.append(item);
  }
  output.replaceChildren(note(`${found.length} ${found.length === 1 ? "article" : "articles"} found`), list);
}

// Pagefind's excerpt is escaped text with <mark> around the matches: keep only those
function excerpt(html) {
  const paragraph = document.createElement("p");
  const parsed = new DOMParser().parseFromString(`<p>${html}</p>`, "text/html");
  for (const node of parsed.body.firstChild.childNodes) {
    if (node.nodeName === "MARK") {
      const mark = document.createElement("mark");
      mark.textContent = node.textContent;
      paragraph.append(mark);
    } else {
      paragraph.append(document.createTextNode(node.textContent));
    }
  }
  return paragraph;
}

function note(text) {
  const paragraph = document.createElement("p");
  paragraph.className = "search-note";
  paragraph.textContent = text;
  return paragraph;
}
