
const {parseMarkdownRule} = require("@continuedev/config-yaml");
let d=""; process.stdin.on("data",c=>d+=c).on("end",()=>{const cs=JSON.parse(d);const o={};
console.warn=()=>{};
for (const k in cs){ o[k]=parseMarkdownRule(cs[k]).markdown; }
console.log(JSON.stringify(o));});
